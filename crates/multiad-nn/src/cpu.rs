//! Borrowing the f32 values of CPU storages and tensors, for the custom ops.

use candle_core::{CpuStorage, Layout, Result, Storage, Tensor};

/// A contiguous f32 storage's values under `l`; `what` names the op and the
/// operand in the error ("batch norm: input must be f32").
pub(crate) fn f32_values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(d) = s else { candle_core::bail!("{what} must be f32") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("{what} must be contiguous") };
    Ok(&d[a..b])
}

/// A contiguous f32 CPU tensor's values, borrowed (no copy).
pub(crate) fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(s) = &*storage else { candle_core::bail!("{what} must be on the CPU") };
    f(f32_values(s, layout, what)?)
}

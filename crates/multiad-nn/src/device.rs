//! Where a model's tensors live: the `device:` key of every experiment file
//! and the `--device` option (docs/gpu.md).

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};

/// `cpu`, `cuda` (the first GPU) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("unknown device `{s}`: write cpu, cuda or cuda:N (N the GPU's index, as nvidia-smi numbers them)");
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            t => match t.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this build can run on NVIDIA GPUs (the `cuda` feature).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The first GPU for a test that compares it with the CPU: `None` (the
/// test prints `SKIPPED: no CUDA device`) where there is none, unless
/// `MULTIAD_REQUIRE_CUDA=1` (the device check), where that is a failure.
pub fn gpu_for_tests() -> Option<Device> {
    match DeviceSpec::Cuda(0).open() {
        Ok(d) => Some(d),
        Err(e) if std::env::var("MULTIAD_REQUIRE_CUDA").is_ok_and(|v| v == "1") => panic!("MULTIAD_REQUIRE_CUDA=1 but {e}"),
        Err(e) => {
            println!("SKIPPED: no CUDA device ({e})");
            None
        }
    }
}

impl DeviceSpec {
    /// Opens the device. A CUDA device in a build without the `cuda`
    /// feature, or one the driver cannot open, is an error that says what
    /// to do.
    pub fn open(&self) -> Result<Device, String> {
        match *self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => open_cuda(n),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<Device, String> {
    Device::new_cuda(n).map_err(|e| {
        // The driver's error without the backtrace candle attaches under RUST_BACKTRACE.
        let e = match e {
            candle_core::Error::WithBacktrace { inner, .. } => *inner,
            e => e,
        };
        format!("cannot open CUDA device {n}: {e}. Check that `nvidia-smi` lists GPU {n} and that the driver is CUDA 13.0 or newer; or run with --device cpu")
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(n: usize) -> Result<Device, String> {
    Err(format!(
        "device cuda:{n} asked for, but this multiad was built without CUDA support. \
         Rebuild with `cargo build --release --features cuda` (docs/gpu.md), or run with --device cpu"
    ))
}

thread_local! {
    static GENERIC_ONLY: Cell<bool> = const { Cell::new(false) };
    static FLOAT64: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every network built inside it in float64: parameters,
/// loaded weights and everything computed from them. For the differential
/// test only (`crates/multiad/tests/golden.rs`), which compares the
/// arithmetic with PyTorch's float64 where float32 rounding alone exceeds
/// the tolerance (the `paper` scale); float64 takes the generic op paths
/// and is far too slow to train with. Applies to this thread only.
pub fn with_float64<R>(f: impl FnOnce() -> R) -> R {
    let previous = FLOAT64.with(|d| d.replace(true));
    let _reset = ResetOnDrop(&FLOAT64, previous);
    f()
}

/// The dtype networks are built in: f32, or f64 inside [`with_float64`].
pub fn parameter_dtype() -> DType {
    if FLOAT64.with(Cell::get) {
        DType::F64
    } else {
        DType::F32
    }
}

/// Restores a thread-local switch when the scope that set it ends, panics
/// included.
struct ResetOnDrop(&'static std::thread::LocalKey<Cell<bool>>, bool);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        self.0.with(|c| c.set(self.1));
    }
}

/// Runs `f` with every op of this crate on its generic path (a composition
/// of candle's own ops), the path tensors on a GPU take, even for tensors on
/// the CPU. This is how the CPU checks the arithmetic a GPU will run: the
/// tests compare each op, and a whole training step, on both paths. Applies
/// to this thread only.
pub fn with_generic_ops<R>(f: impl FnOnce() -> R) -> R {
    let previous = GENERIC_ONLY.with(|g| g.replace(true));
    let _reset = ResetOnDrop(&GENERIC_ONLY, previous);
    f()
}

/// Whether the ops may use their CPU kernels on these tensors: all f32 on
/// the CPU, and not inside [`with_generic_ops`].
pub fn cpu_kernels_apply(tensors: &[&Tensor]) -> bool {
    !GENERIC_ONLY.with(Cell::get) && tensors.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// What to do when `e` is the GPU running out of memory: lower the batch
/// size. `None` for any other error.
pub fn out_of_memory_advice(e: &candle_core::Error, batch_size: usize) -> Option<String> {
    let text = e.to_string();
    (text.contains("OUT_OF_MEMORY") || text.contains("out of memory")).then(|| {
        format!(
            "out of GPU memory with batches of {batch_size} images: lower `batch_size` in the config \
             (the last checkpoint is intact; continue with `multiad train --resume`). The device said: {text}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "metal"] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("cuda:N"), "{e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        let e = DeviceSpec::Cuda(0).open().unwrap_err();
        assert!(e.contains("--features cuda") && e.contains("--device cpu"), "{e}");
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
    }

    #[test]
    fn out_of_memory_names_the_batch_size() {
        let e = candle_core::Error::Msg("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into());
        let m = out_of_memory_advice(&e, 8).expect("recognised");
        assert!(m.contains("batches of 8") && m.contains("batch_size") && m.contains("--resume"), "{m}");
        assert!(out_of_memory_advice(&candle_core::Error::Msg("shape mismatch".into()), 8).is_none());
    }

    #[test]
    fn float64_applies_inside_its_scope_only_even_after_a_panic() {
        let store = crate::ParamStore::new(0);
        let dev = Device::Cpu;
        let inside = with_float64(|| store.var_builder(&dev).get((2, 3), "w64").unwrap());
        assert_eq!(inside.dtype(), DType::F64);
        assert_eq!(store.var_builder(&dev).get((2, 3), "w32").unwrap().dtype(), DType::F32);
        assert!(std::panic::catch_unwind(|| with_float64(|| panic!("inside"))).is_err());
        assert_eq!(parameter_dtype(), DType::F32);
        // Nested scopes restore what was there before them.
        with_float64(|| {
            with_generic_ops(|| assert_eq!(parameter_dtype(), DType::F64));
            assert_eq!(parameter_dtype(), DType::F64);
        });
        assert_eq!(parameter_dtype(), DType::F32);
    }
}

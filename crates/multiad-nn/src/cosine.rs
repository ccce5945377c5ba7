//! 1 − cos(a, b) over the channels of two (B, C, H, W) feature maps at
//! every position, as one op with its own backward. Composed from candle's
//! ops it took nine passes over the features (squares, two strided channel
//! sums, two broadcast divisions, a product, a third sum) and as many again
//! backward: ~200 ms of a `paper` inference batch for four critical layers.
//!
//! Each norm is clamped at 1e-8 (its square at 1e-16) before dividing, as
//! `a / max(‖a‖, 1e-8)`: a zero feature vector gives cos 0, and below the
//! clamp the norm has no gradient.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu::{f32_values, with_f32};

/// The clamp on ‖x‖² (‖x‖ ≥ 1e-8).
const MIN_SQUARED_NORM: f32 = 1e-16;

/// Positions per task: a strip of every channel, so each task reads
/// contiguous runs and threads share nothing.
const STRIP: usize = 1024;

/// Per-position sums over channels: (a·b, ‖a‖², ‖b‖²).
fn channel_sums(a: &[f32], b: &[f32], c: usize, hw: usize, p0: usize, len: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut dot, mut aa, mut bb) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    for ch in 0..c {
        let (ra, rb) = (&a[ch * hw + p0..ch * hw + p0 + len], &b[ch * hw + p0..ch * hw + p0 + len]);
        for i in 0..len {
            dot[i] += ra[i] * rb[i];
            aa[i] += ra[i] * ra[i];
            bb[i] += rb[i] * rb[i];
        }
    }
    (dot, aa, bb)
}

/// The strips of one batch: (image, first position, positions).
fn strips(batch: usize, hw: usize) -> Vec<(usize, usize, usize)> {
    (0..batch).flat_map(|n| (0..hw).step_by(STRIP).map(move |p0| (n, p0, STRIP.min(hw - p0)))).collect()
}

fn dims(l: &Layout) -> Result<(usize, usize, usize)> {
    let (b, c, h, w) = l.shape().dims4()?;
    Ok((b, c, h * w))
}

struct CosineDistance;

impl CustomOp2 for CosineDistance {
    fn name(&self) -> &'static str {
        "cosine-distance-map"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, c, hw) = dims(l1)?;
        let (a, b) = (f32_values(s1, l1, "cosine distance: a")?, f32_values(s2, l2, "cosine distance: b")?);
        let parts: Vec<Vec<f32>> = strips(batch, hw)
            .into_par_iter()
            .map(|(n, p0, len)| {
                let (dot, aa, bb) = channel_sums(&a[n * c * hw..(n + 1) * c * hw], &b[n * c * hw..(n + 1) * c * hw], c, hw, p0, len);
                (0..len).map(|i| 1.0 - dot[i] / (aa[i].max(MIN_SQUARED_NORM).sqrt() * bb[i].max(MIN_SQUARED_NORM).sqrt())).collect()
            })
            .collect();
        let (_, _, h, w) = l1.shape().dims4()?;
        Ok((CpuStorage::F32(parts.concat()), Shape::from((batch, 1, h, w))))
    }

    /// With u = a/‖a‖, v = b/‖b‖ and cos = u·v:
    /// ∂(1 − cos)/∂a = −(v − cos·u)/‖a‖ (the second term only where ‖a‖ is
    /// not clamped), and the same with a and b swapped.
    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (batch, c, h, w) = a.dims4()?;
        let (hw, len) = (h * w, a.elem_count());
        // A frozen teacher's features need no gradient.
        let (want_a, want_b) = (a.track_op(), b.track_op());
        let (a, b, grad) = (a.contiguous()?, b.contiguous()?, grad.contiguous()?);
        let mut ga = vec![0f32; if want_a { len } else { 0 }];
        let mut gb = vec![0f32; if want_b { len } else { 0 }];
        // The operands' own buffers, borrowed: no copies of the features.
        with_f32(&a, "cosine distance: a", |av| {
            with_f32(&b, "cosine distance: b", |bv| {
                with_f32(&grad, "cosine distance: gradient", |gv| {
                    let image = |n: usize, ga: Option<&mut [f32]>, gb: Option<&mut [f32]>| {
                        let (a, b) = (&av[n * c * hw..(n + 1) * c * hw], &bv[n * c * hw..(n + 1) * c * hw]);
                        let (dot, aa, bb) = channel_sums(a, b, c, hw, 0, hw);
                        // Per position: the coefficient of the other vector
                        // (the same in both gradients) and of each own vector.
                        let (mut cross, mut own_a, mut own_b) = (vec![0f32; hw], vec![0f32; hw], vec![0f32; hw]);
                        for i in 0..hw {
                            let (na, nb) = (aa[i].max(MIN_SQUARED_NORM).sqrt(), bb[i].max(MIN_SQUARED_NORM).sqrt());
                            let (g, cos) = (gv[n * hw + i], dot[i] / (na * nb));
                            cross[i] = -g / (na * nb);
                            own_a[i] = if aa[i] > MIN_SQUARED_NORM { g * cos / (na * na) } else { 0.0 };
                            own_b[i] = if bb[i] > MIN_SQUARED_NORM { g * cos / (nb * nb) } else { 0.0 };
                        }
                        for (out, own, this, other) in [(ga, &own_a, a, b), (gb, &own_b, b, a)] {
                            let Some(out) = out else { continue };
                            for ch in 0..c {
                                let r = ch * hw..(ch + 1) * hw;
                                for (((o, &x), &y), i) in out[r.clone()].iter_mut().zip(&this[r.clone()]).zip(&other[r]).zip(0..) {
                                    *o = cross[i] * y + own[i] * x;
                                }
                            }
                        }
                    };
                    // One image per task: its gradients are disjoint slices.
                    let size = c * hw;
                    match (want_a, want_b) {
                        (true, true) => ga.par_chunks_mut(size).zip(gb.par_chunks_mut(size)).enumerate().for_each(|(n, (x, y))| image(n, Some(x), Some(y))),
                        (true, false) => ga.par_chunks_mut(size).enumerate().for_each(|(n, x)| image(n, Some(x), None)),
                        (false, true) => gb.par_chunks_mut(size).enumerate().for_each(|(n, y)| image(n, None, Some(y))),
                        (false, false) => {}
                    }
                    Ok(())
                })
            })
        })?;
        let dev = a.device();
        let ga = if want_a { Some(Tensor::from_vec(ga, (batch, c, h, w), dev)?) } else { None };
        let gb = if want_b { Some(Tensor::from_vec(gb, (batch, c, h, w), dev)?) } else { None };
        Ok((ga, gb))
    }
}

/// 1 − cos(a, b) over dimension 1 of two (B, C, H, W) tensors: (B, 1, H, W).
/// One fused op for f32 on the CPU; candle's ops elsewhere (same clamp).
pub fn cosine_distance_map(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() || a.rank() != 4 {
        candle_core::bail!("cosine distance: feature maps must be (B, C, H, W) of one shape, got {:?} and {:?}", a.dims(), b.dims());
    }
    if crate::device::cpu_kernels_apply(&[a, b]) {
        return a.contiguous()?.apply_op2(&b.contiguous()?, CosineDistance);
    }
    cosine_distance_map_composed(a, b)
}

/// The same map from candle's tensor ops: the path on other devices and
/// dtypes, and the reference the fused op is tested against.
pub fn cosine_distance_map_composed(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let unit = |x: &Tensor| -> Result<Tensor> {
        let norm = x.sqr()?.sum_keepdim(1)?.clamp(MIN_SQUARED_NORM, f32::MAX)?.sqrt()?;
        x.broadcast_div(&norm)
    };
    (unit(a)? * unit(b)?)?.sum_keepdim(1)?.affine(-1.0, 1.0)
}

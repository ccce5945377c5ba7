//! 1 − cos(a, b) over the channels of two (B, C, H, W) feature maps at
//! every position, as one op with its own backward. Composed from candle's
//! ops it took nine passes over the features (squares, two strided channel
//! sums, two broadcast divisions, a product, a third sum) and as many again
//! backward: ~200 ms of a `paper` inference batch for four critical layers.
//!
//! Each norm is clamped at 1e-8 (its square at 1e-16) before dividing, as
//! `a / max(‖a‖, 1e-8)`: a zero feature vector gives cos 0, and below the
//! clamp the norm has no gradient.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

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

fn values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("cosine distance: {what} must be f32") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("cosine distance: {what} must be contiguous") };
    Ok(&v[a..b])
}

struct CosineDistance;

impl CustomOp2 for CosineDistance {
    fn name(&self) -> &'static str {
        "cosine-distance-map"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (batch, c, hw) = dims(l1)?;
        let (a, b) = (values(s1, l1, "a")?, values(s2, l2, "b")?);
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
        let hw = h * w;
        // A frozen teacher's features need no gradient.
        let (want_a, want_b) = (a.track_op(), b.track_op());
        let (a, b, grad) = (a.contiguous()?, b.contiguous()?, grad.contiguous()?);
        let (av, bv, gv) = (a.flatten_all()?.to_vec1::<f32>()?, b.flatten_all()?.to_vec1::<f32>()?, grad.flatten_all()?.to_vec1::<f32>()?);
        let mut ga = vec![0f32; av.len()];
        let mut gb = vec![0f32; bv.len()];
        // One image per task: its gradients are disjoint slices.
        ga.par_chunks_mut(c * hw).zip(gb.par_chunks_mut(c * hw)).enumerate().for_each(|(n, (ga, gb))| {
            let (a, b) = (&av[n * c * hw..(n + 1) * c * hw], &bv[n * c * hw..(n + 1) * c * hw]);
            let (dot, aa, bb) = channel_sums(a, b, c, hw, 0, hw);
            // Per position: coefficients of a and b in each gradient.
            let (mut a_in_ga, mut b_in_ga, mut a_in_gb, mut b_in_gb) = (vec![0f32; hw], vec![0f32; hw], vec![0f32; hw], vec![0f32; hw]);
            for i in 0..hw {
                let (na, nb) = (aa[i].max(MIN_SQUARED_NORM).sqrt(), bb[i].max(MIN_SQUARED_NORM).sqrt());
                let cos = dot[i] / (na * nb);
                let g = gv[n * hw + i];
                b_in_ga[i] = -g / (na * nb);
                a_in_ga[i] = if aa[i] > MIN_SQUARED_NORM { g * cos / (na * na) } else { 0.0 };
                a_in_gb[i] = -g / (na * nb);
                b_in_gb[i] = if bb[i] > MIN_SQUARED_NORM { g * cos / (nb * nb) } else { 0.0 };
            }
            for ch in 0..c {
                let r = ch * hw..(ch + 1) * hw;
                let (ra, rb) = (&a[r.clone()], &b[r.clone()]);
                let (oa, ob) = (&mut ga[r.clone()], &mut gb[r]);
                if want_a {
                    for i in 0..hw {
                        oa[i] = b_in_ga[i] * rb[i] + a_in_ga[i] * ra[i];
                    }
                }
                if want_b {
                    for i in 0..hw {
                        ob[i] = a_in_gb[i] * ra[i] + b_in_gb[i] * rb[i];
                    }
                }
            }
        });
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
    if a.device().is_cpu() && a.dtype() == DType::F32 && b.dtype() == DType::F32 {
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

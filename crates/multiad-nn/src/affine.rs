//! The per-channel tail of a convolution layer as one pass:
//! y = act(x · a_c + b_c [+ r]), where a_c, b_c are a folded batch norm (or
//! 1 and a bias), r an optional residual and act none, ReLU or ReLU6.
//!
//! Why: written with candle's ops the tail is a broadcast add, the
//! residual add and the activation (ReLU6 is a maximum and a minimum), each
//! a full pass over the activations with a freshly allocated output. In the
//! `cpu` teacher (EfficientNet-Lite0) those passes were about a third of the
//! forward time; here it is one read of each operand and one write.
//!
//! Backward: with m = [lo < y < hi] the activation's mask (1 everywhere
//! without one), dx = dy · m · a_c and dr = dy · m. The coefficients are
//! constants (folded weights of a frozen network, or an evaluation-mode
//! batch norm, which nothing trains), so they get no gradient.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The activation after the affine map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Identity,
    /// max(0, ·)
    Relu,
    /// min(max(0, ·), 6) (MobileNet / EfficientNet-Lite)
    Relu6,
}

impl Activation {
    /// The activation as candle's ops (the composed reference paths).
    fn apply_composed(self, y: Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        }
    }

    /// The open interval where the activation passes its input (and its
    /// gradient) through.
    fn bounds(self) -> (f32, f32) {
        match self {
            Activation::Identity => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }
}

/// Clamps to [lo, hi] with comparisons rather than `max`/`min`, so that a
/// NaN stays a NaN (the trainers stop on non-finite losses; a ReLU must not
/// hide one). Branch-free selects: the loops around it vectorise.
#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Per-channel coefficients: `scale` None means 1.
#[derive(Clone)]
struct Coefficients {
    scale: Option<Vec<f32>>,
    shift: Vec<f32>,
    act: Activation,
}

/// (planes, values per plane) of an input of rank >= 2 with `c` channels in
/// dimension 1.
fn planes(shape: &Shape, c: usize) -> Result<usize> {
    let d = shape.dims();
    if d.len() < 2 || d[1] != c {
        candle_core::bail!("channel affine: input {shape:?} does not have {c} channels in dimension 1");
    }
    Ok(d[2..].iter().product())
}

impl Coefficients {
    fn forward(&self, x: &[f32], r: Option<&[f32]>, len: usize) -> Vec<f32> {
        let c = self.shift.len();
        let (lo, hi) = self.act.bounds();
        let mut y = vec![0f32; x.len()];
        let len = len.max(1);
        y.par_chunks_mut(len).enumerate().for_each(|(p, out)| {
            let ch = p % c;
            let (a, b) = (self.scale.as_ref().map_or(1.0, |s| s[ch]), self.shift[ch]);
            let xs = &x[p * len..p * len + out.len()];
            match r {
                Some(r) => {
                    let rs = &r[p * len..p * len + out.len()];
                    for ((o, &v), &w) in out.iter_mut().zip(xs).zip(rs) {
                        *o = clamp(v * a + b + w, lo, hi);
                    }
                }
                None => {
                    for (o, &v) in out.iter_mut().zip(xs) {
                        *o = clamp(v * a + b, lo, hi);
                    }
                }
            }
        });
        y
    }
}

/// y = act(x · a_c + b_c).
struct Affine(Coefficients);

/// y = act(x · a_c + b_c + r).
struct AffineResidual(Coefficients);

/// dx = dy · m(y) · a_c, as one op (operands: dy, y).
struct MaskedGrad {
    scale: Option<Vec<f32>>,
    act: Activation,
}

impl CustomOp2 for MaskedGrad {
    fn name(&self) -> &'static str {
        "channel-affine-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, ys: &CpuStorage, yl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = crate::cpu::f32_values(gs, gl, "channel affine backward: gradient")?;
        let y = crate::cpu::f32_values(ys, yl, "channel affine backward: output")?;
        let (lo, hi) = self.act.bounds();
        let c = gl.shape().dims()[1];
        let len = gl.shape().dims()[2..].iter().product::<usize>().max(1);
        let mut dx = vec![0f32; g.len()];
        dx.par_chunks_mut(len).enumerate().for_each(|(p, out)| {
            let a = self.scale.as_ref().map_or(1.0, |s| s[p % c]);
            let range = p * len..p * len + out.len();
            for ((o, &d), &v) in out.iter_mut().zip(&g[range.clone()]).zip(&y[range]) {
                *o = if v > lo && v < hi { d * a } else { 0.0 };
            }
        });
        Ok((CpuStorage::F32(dx), gl.shape().clone()))
    }
}

fn masked_grad(grad: &Tensor, y: &Tensor, scale: Option<Vec<f32>>, act: Activation) -> Result<Tensor> {
    if scale.is_none() && act == Activation::Identity {
        return Ok(grad.clone());
    }
    grad.contiguous()?.apply_op2_no_bwd(&y.contiguous()?, &MaskedGrad { scale, act })
}

impl CustomOp1 for Affine {
    fn name(&self) -> &'static str {
        "channel-affine"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let len = planes(l.shape(), self.0.shift.len())?;
        let x = crate::cpu::f32_values(s, l, "channel affine: input")?;
        Ok((CpuStorage::F32(self.0.forward(x, None, len)), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        masked_grad(grad, y, self.0.scale.clone(), self.0.act).map(Some)
    }
}

impl CustomOp2 for AffineResidual {
    fn name(&self) -> &'static str {
        "channel-affine-residual"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, rs: &CpuStorage, rl: &Layout) -> Result<(CpuStorage, Shape)> {
        if xl.shape() != rl.shape() {
            candle_core::bail!("channel affine: residual {:?} does not match input {:?}", rl.shape(), xl.shape());
        }
        let len = planes(xl.shape(), self.0.shift.len())?;
        let x = crate::cpu::f32_values(xs, xl, "channel affine: input")?;
        let r = crate::cpu::f32_values(rs, rl, "channel affine: residual")?;
        Ok((CpuStorage::F32(self.0.forward(x, Some(r), len)), xl.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _r: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dr = masked_grad(grad, y, None, self.0.act)?;
        let dx = match &self.0.scale {
            None => dr.clone(),
            Some(s) => masked_grad(grad, y, Some(s.clone()), self.0.act)?,
        };
        Ok((Some(dx), Some(dr)))
    }
}

fn fused_applies(x: &Tensor) -> bool {
    crate::device::cpu_kernels_apply(&[x]) && x.rank() >= 2
}

/// The same map with candle's ops (other devices and dtypes, and the
/// reference the tests compare with).
pub fn channel_affine_composed(x: &Tensor, scale: Option<&[f64]>, shift: &[f64], residual: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    let shape: Vec<usize> = (0..x.rank()).map(|i| if i == 1 { shift.len() } else { 1 }).collect();
    let mut y = x.clone();
    if let Some(s) = scale {
        y = y.broadcast_mul(&Tensor::from_slice(s, shape.as_slice(), x.device())?.to_dtype(x.dtype())?)?;
    }
    y = y.broadcast_add(&Tensor::from_slice(shift, shape.as_slice(), x.device())?.to_dtype(x.dtype())?)?;
    if let Some(r) = residual {
        y = (y + r)?;
    }
    act.apply_composed(y)
}

/// act(x · scale_c + shift_c [+ residual]) over dimension 1 of `x` (of
/// rank 2 or more); `scale` None means 1. One pass on the CPU in f32; candle's ops
/// elsewhere. Gradients reach `x` and `residual`, not the coefficients. The
/// coefficients are f64 so that a float64 network keeps them exact; the f32
/// kernel rounds them, exactly for coefficients that came from f32.
pub fn channel_affine(x: &Tensor, scale: Option<&[f64]>, shift: &[f64], residual: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    if let Some(s) = scale {
        if s.len() != shift.len() {
            candle_core::bail!("channel affine: {} scales for {} shifts", s.len(), shift.len());
        }
    }
    if !fused_applies(x) || residual.is_some_and(|r| !fused_applies(r)) {
        return channel_affine_composed(x, scale, shift, residual, act);
    }
    let to_f32 = |v: &[f64]| v.iter().map(|&c| c as f32).collect::<Vec<f32>>();
    let coef = Coefficients { scale: scale.map(to_f32), shift: to_f32(shift), act };
    match residual {
        None => x.contiguous()?.apply_op1(Affine(coef)),
        Some(r) => x.contiguous()?.apply_op2(&r.contiguous()?, AffineResidual(coef)),
    }
}

/// y = act(x · s_p + r): a scale per plane p = (image, channel), as
/// squeeze-and-excitation gives (Eq 4), then a residual add and the
/// activation, in one pass. Backward, with m the activation's mask:
/// dx = dy · m · s_p, ds_p = Σ dy · m · x over the plane, dr = dy · m.
struct PlaneScaleResidual(Activation);

/// (x, s) -> x · s_p, no backward (a piece of the backward above).
struct PlaneScale;

/// (a, b) -> Σ a · b over each plane, no backward.
struct PlaneDot;

/// Values per plane of `x`, checking that `s` holds one value per plane.
fn plane_len(x: &Shape, s: &Shape) -> Result<usize> {
    let d = x.dims();
    if d.len() < 2 || s.elem_count() != d[0] * d[1] {
        candle_core::bail!("plane scale: {s:?} does not hold one value per (image, channel) of {x:?}");
    }
    Ok(d[2..].iter().product::<usize>().max(1))
}

impl CustomOp3 for PlaneScaleResidual {
    fn name(&self) -> &'static str {
        "plane-scale-residual"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ss: &CpuStorage, sl: &Layout, rs: &CpuStorage, rl: &Layout) -> Result<(CpuStorage, Shape)> {
        let len = plane_len(xl.shape(), sl.shape())?;
        if xl.shape() != rl.shape() {
            candle_core::bail!("plane scale: residual {:?} does not match input {:?}", rl.shape(), xl.shape());
        }
        let x = crate::cpu::f32_values(xs, xl, "plane scale: input")?;
        let s = crate::cpu::f32_values(ss, sl, "plane scale: scales")?;
        let r = crate::cpu::f32_values(rs, rl, "plane scale: residual")?;
        let (lo, hi) = self.0.bounds();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(len).enumerate().for_each(|(p, out)| {
            let range = p * len..p * len + out.len();
            for ((o, &v), &w) in out.iter_mut().zip(&x[range.clone()]).zip(&r[range]) {
                *o = clamp(v * s[p] + w, lo, hi);
            }
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, s: &Tensor, _r: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let gm = masked_grad(grad, y, None, self.0)?.contiguous()?;
        let dx = gm.apply_op2_no_bwd(&s.contiguous()?, &PlaneScale)?;
        let ds = gm.apply_op2_no_bwd(&x.contiguous()?, &PlaneDot)?.reshape(s.shape())?;
        Ok((Some(dx), Some(ds), Some(gm)))
    }
}

impl CustomOp2 for PlaneScale {
    fn name(&self) -> &'static str {
        "plane-scale"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ss: &CpuStorage, sl: &Layout) -> Result<(CpuStorage, Shape)> {
        let len = plane_len(xl.shape(), sl.shape())?;
        let x = crate::cpu::f32_values(xs, xl, "plane scale: input")?;
        let s = crate::cpu::f32_values(ss, sl, "plane scale: scales")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(len).zip(x.par_chunks(len)).enumerate().for_each(|(p, (out, x))| {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v * s[p];
            }
        });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }
}

impl CustomOp2 for PlaneDot {
    fn name(&self) -> &'static str {
        "plane-dot"
    }

    fn cpu_fwd(&self, a_s: &CpuStorage, al: &Layout, b_s: &CpuStorage, bl: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = al.shape().dims();
        let planes = d[0] * d[1];
        let len = plane_len(al.shape(), &Shape::from(planes))?;
        let a = crate::cpu::f32_values(a_s, al, "plane dot: lhs")?;
        let b = crate::cpu::f32_values(b_s, bl, "plane dot: rhs")?;
        // f64 sums: a plane holds up to 64x64 (or more) products.
        let dots: Vec<f32> =
            a.par_chunks(len).zip(b.par_chunks(len)).map(|(a, b)| a.iter().zip(b).map(|(&u, &v)| (u * v) as f64).sum::<f64>() as f32).collect();
        Ok((CpuStorage::F32(dots), Shape::from(planes)))
    }
}

/// act(x · s + r) for `x` and `r` of shape (N, C, ...) and `s` holding one
/// scale per (image, channel) (shape (N, C) or (N, C, 1, 1)): the tail of a
/// squeeze-and-excitation residual block (Eq 4, the shortcut add and the
/// block's ReLU) as one pass on the CPU in f32; candle's ops elsewhere.
/// Gradients reach all three operands.
pub fn plane_scale_residual(x: &Tensor, s: &Tensor, r: &Tensor, act: Activation) -> Result<Tensor> {
    if !(fused_applies(x) && fused_applies(r) && crate::device::cpu_kernels_apply(&[s])) {
        return plane_scale_residual_composed(x, s, r, act);
    }
    x.contiguous()?.apply_op3(&s.contiguous()?, &r.contiguous()?, PlaneScaleResidual(act))
}

/// The same with candle's ops (other devices; the tests' reference).
pub fn plane_scale_residual_composed(x: &Tensor, s: &Tensor, r: &Tensor, act: Activation) -> Result<Tensor> {
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let shape: Vec<usize> = (0..x.rank())
        .map(|i| match i {
            0 => n,
            1 => c,
            _ => 1,
        })
        .collect();
    let y = (x.broadcast_mul(&s.reshape(shape.as_slice())?)? + r)?;
    act.apply_composed(y)
}

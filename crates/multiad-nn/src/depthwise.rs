//! Depthwise convolution (one k x k filter per channel, `groups = channels`),
//! the 3x3 and 5x5 layers of EfficientNet-Lite0. candle 0.11 runs a grouped
//! convolution as one full convolution per group plus a concatenation, which
//! made the Lite0 teacher 4x slower than PyTorch's; here each channel plane is
//! a few vectorisable row updates, with both gradients written the same way.
//!
//! y[b,c,oy,ox] = Σ_{ky,kx} w[c,ky,kx] · x[b,c,oy·s+ky−p, ox·s+kx−p] (zero outside).

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::generic;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    k: usize,
    oh: usize,
    ow: usize,
    stride: usize,
    /// Zero rows above and columns left of the input (the padding below and
    /// right only shows in the output size).
    pad_top: usize,
    pad_left: usize,
}

impl Geometry {
    /// Output rows `oy` whose input row `oy·s + ky − p` lies inside the image,
    /// and the same for columns: lets the inner loops run without bounds tests.
    fn valid(&self, n_in: usize, n_out: usize, kk: usize, p: usize) -> std::ops::Range<usize> {
        let s = self.stride;
        let lo = if p > kk { (p - kk).div_ceil(s) } else { 0 };
        // oy·s + kk − p ≤ n_in − 1
        let hi = if n_in + p > kk { ((n_in + p - kk - 1) / s + 1).min(n_out) } else { 0 };
        lo..hi.max(lo)
    }
}

/// Calls `f(oy, iy, ox range, first input column)` for every (output row,
/// input row) pair that kernel tap (ky, kx) connects.
#[inline]
fn for_each_row(g: &Geometry, ky: usize, kx: usize, mut f: impl FnMut(usize, usize, std::ops::Range<usize>, usize)) {
    let rows = g.valid(g.h, g.oh, ky, g.pad_top);
    let cols = g.valid(g.w, g.ow, kx, g.pad_left);
    if cols.is_empty() {
        return;
    }
    let ix0 = cols.start * g.stride + kx - g.pad_left;
    for oy in rows {
        f(oy, oy * g.stride + ky - g.pad_top, cols.clone(), ix0);
    }
}

/// One output row at a time (it stays in L1 while all k x k taps add into
/// it: tap by tap over whole planes was bound by L2 traffic). A strided
/// convolution first splits each input row into its `stride` column phases
/// (columns ≡ q mod s, phase after phase), so that every tap reads a
/// contiguous run and the loops vectorise.
fn forward(x: &[f32], wt: &[f32], planes: usize, c: usize, g: Geometry) -> Vec<f32> {
    let (hw, ohw, kk, s) = (g.h * g.w, g.oh * g.ow, g.k * g.k, g.stride);
    // Per tap column kx: the valid output columns and where their inputs
    // start in the (phase-split) row.
    let taps: Vec<(std::ops::Range<usize>, usize)> = (0..g.k)
        .map(|kx| {
            let cols = g.valid(g.w, g.ow, kx, g.pad_left);
            let ix0 = (cols.start * s + kx).saturating_sub(g.pad_left);
            // Phase q = ix0 mod s starts after the phases before it.
            let q = ix0 % s;
            let phase_start: usize = (0..q).map(|p| (g.w - p).div_ceil(s)).sum();
            (cols, phase_start + ix0 / s)
        })
        .collect();
    let mut y = vec![0f32; planes * ohw];
    y.par_chunks_mut(ohw).enumerate().for_each(|(pl, out)| {
        let plane = &x[pl * hw..(pl + 1) * hw];
        let split;
        let xin = if s == 1 {
            plane
        } else {
            let mut buf = Vec::with_capacity(hw);
            for row in plane.chunks_exact(g.w) {
                for q in 0..s {
                    buf.extend(row.iter().skip(q).step_by(s));
                }
            }
            split = buf;
            &split[..]
        };
        let wc = &wt[(pl % c) * kk..(pl % c + 1) * kk];
        for (oy, dst) in out.chunks_exact_mut(g.ow).enumerate() {
            for ky in 0..g.k {
                let iy = oy * s + ky;
                if iy < g.pad_top || iy - g.pad_top >= g.h {
                    continue;
                }
                let src = &xin[(iy - g.pad_top) * g.w..(iy - g.pad_top + 1) * g.w];
                for (kx, (cols, start)) in taps.iter().enumerate() {
                    if cols.is_empty() {
                        continue;
                    }
                    let wv = wc[ky * g.k + kx];
                    for (o, &v) in dst[cols.clone()].iter_mut().zip(&src[*start..*start + cols.len()]) {
                        *o += wv * v;
                    }
                }
            }
        }
    });
    y
}

/// dx: every output gradient spread back onto the inputs its taps read.
fn input_grad(dy: &[f32], wt: &[f32], planes: usize, c: usize, g: Geometry) -> Vec<f32> {
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
    let mut dx = vec![0f32; planes * hw];
    dx.par_chunks_mut(hw).enumerate().for_each(|(pl, gin)| {
        let gout = &dy[pl * ohw..(pl + 1) * ohw];
        let wc = &wt[(pl % c) * kk..(pl % c + 1) * kk];
        for ky in 0..g.k {
            for kx in 0..g.k {
                let wv = wc[ky * g.k + kx];
                for_each_row(&g, ky, kx, |oy, iy, cols, ix0| {
                    let src = &gout[oy * g.ow + cols.start..oy * g.ow + cols.end];
                    let dst = &mut gin[iy * g.w..(iy + 1) * g.w];
                    if g.stride == 1 {
                        for (d, &v) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                            *d += wv * v;
                        }
                    } else {
                        for (j, &v) in src.iter().enumerate() {
                            dst[ix0 + j * g.stride] += wv * v;
                        }
                    }
                });
            }
        }
    });
    dx
}

/// dw[c,ky,kx] = Σ_b Σ_o dy[b,c,o] · x[b,c,o·s+k−p], one channel per task.
fn kernel_grad(x: &[f32], dy: &[f32], batch: usize, c: usize, g: Geometry) -> Vec<f32> {
    let (hw, ohw, kk) = (g.h * g.w, g.oh * g.ow, g.k * g.k);
    let mut dw = vec![0f32; c * kk];
    dw.par_chunks_mut(kk).enumerate().for_each(|(ci, gw)| {
        for b in 0..batch {
            let pl = b * c + ci;
            let xin = &x[pl * hw..(pl + 1) * hw];
            let gout = &dy[pl * ohw..(pl + 1) * ohw];
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let mut acc = 0f32;
                    for_each_row(&g, ky, kx, |oy, iy, cols, ix0| {
                        let go = &gout[oy * g.ow + cols.start..oy * g.ow + cols.end];
                        let src = &xin[iy * g.w..(iy + 1) * g.w];
                        if g.stride == 1 {
                            acc += go.iter().zip(&src[ix0..ix0 + go.len()]).map(|(a, b)| a * b).sum::<f32>();
                        } else {
                            acc += go.iter().enumerate().map(|(j, a)| a * src[ix0 + j * g.stride]).sum::<f32>();
                        }
                    });
                    gw[ky * g.k + kx] += acc;
                }
            }
        }
    });
    dw
}

/// How the input is padded.
#[derive(Debug, Clone, Copy)]
enum Padding {
    /// `p` zeros on every side (PyTorch's `padding=p`).
    Symmetric(usize),
    /// TensorFlow's "SAME": output = ceil(input / stride), the odd zero at
    /// the bottom / right (EfficientNet's published weights expect it).
    Same,
}

struct Depthwise {
    stride: usize,
    padding: Padding,
}

impl Depthwise {
    fn geometry(&self, x: &Shape, w: &Shape) -> Result<(usize, usize, Geometry)> {
        let (b, c, h, wd) = x.dims4()?;
        let (cw, one, k, k2) = w.dims4()?;
        if cw != c || one != 1 || k != k2 {
            candle_core::bail!("depthwise conv2d: kernel {w:?} does not fit input {x:?} (expected ({c}, 1, k, k))");
        }
        let s = self.stride;
        // (output size, leading padding) along one axis.
        let axis = |n: usize| -> Result<(usize, usize)> {
            match self.padding {
                Padding::Symmetric(p) => {
                    if n + 2 * p < k {
                        candle_core::bail!("depthwise conv2d: input {h}x{wd} is smaller than the {k}x{k} kernel");
                    }
                    Ok(((n + 2 * p - k) / s + 1, p))
                }
                Padding::Same => {
                    let out = n.div_ceil(s);
                    let total = ((out - 1) * s + k).saturating_sub(n);
                    Ok((out, total / 2))
                }
            }
        };
        let ((oh, pad_top), (ow, pad_left)) = (axis(h)?, axis(wd)?);
        Ok((b, c, Geometry { h, w: wd, k, oh, ow, stride: s, pad_top, pad_left }))
    }
}

fn as_slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    crate::cpu::f32_values(s, l, "depthwise conv2d: input")
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, g) = self.geometry(l1.shape(), l2.shape())?;
        let y = forward(as_slice(s1, l1)?, as_slice(s2, l2)?, b * c, c, g);
        Ok((CpuStorage::F32(y), Shape::from((b, c, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c, g) = self.geometry(x.shape(), w.shape())?;
        let dy: Vec<f32> = grad.flatten_all()?.to_vec1()?;
        // A frozen input or kernel (a backbone's weights, an image) gets no
        // gradient: saliency maps need only dx, training only dw.
        let gx = if x.track_op() {
            let wv: Vec<f32> = w.flatten_all()?.to_vec1()?;
            Some(Tensor::from_vec(input_grad(&dy, &wv, b * c, c, g), x.shape(), x.device())?)
        } else {
            None
        };
        let gw = if w.track_op() {
            let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
            Some(Tensor::from_vec(kernel_grad(&xv, &dy, b, c, g), w.shape(), w.device())?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// `x.conv2d(w, padding, stride, 1, channels)` for a (C, 1, k, k) kernel:
/// our direct kernel on the CPU in f32; elsewhere a sum over the kernel's
/// taps ([`crate::generic::depthwise_conv2d`]), not candle's grouped
/// convolution, which is one convolution per channel.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !crate::device::cpu_kernels_apply(&[x, w]) {
        let (_, _, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        let (rows, cols) = (generic::Axis::symmetric(h, k, stride, padding)?, generic::Axis::symmetric(wd, k, stride, padding)?);
        return generic::depthwise_conv2d(x, w, stride, rows, cols);
    }
    apply(x, w, stride, Padding::Symmetric(padding))
}

/// Depthwise convolution with TensorFlow's "SAME" padding (output =
/// ceil(input / stride), the odd zero row / column at the bottom / right),
/// without materialising the padded input on the CPU; elsewhere padded and
/// summed over taps ([`crate::generic::depthwise_conv2d`]).
pub fn depthwise_conv2d_same(x: &Tensor, w: &Tensor, stride: usize) -> Result<Tensor> {
    if !crate::device::cpu_kernels_apply(&[x, w]) {
        let (_, _, h, wd) = x.dims4()?;
        let k = w.dim(2)?;
        return generic::depthwise_conv2d(x, w, stride, generic::Axis::same(h, k, stride)?, generic::Axis::same(wd, k, stride)?);
    }
    apply(x, w, stride, Padding::Same)
}

fn apply(x: &Tensor, w: &Tensor, stride: usize, padding: Padding) -> Result<Tensor> {
    if stride == 0 {
        candle_core::bail!("depthwise conv2d: stride must be at least 1");
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Depthwise { stride, padding })
}

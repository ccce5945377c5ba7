//! 2-D convolution as unfolded patches times the kernel matrix (im2col +
//! gemm) in the forward pass and both backward passes. candle 0.11's own CPU
//! convolution spent half of a student training step in its tiled im2col,
//! and its input gradient is a direct-loop `conv_transpose2d`.
//!
//! For y[o] = Σ_k x[o·s + k·d − p] · w[k], the input gradient is
//! dx[i] = Σ_k z[i + p − k·d] · w[k], where z is dy with s − 1 zeros inserted
//! between its elements: a stride-1 correlation of z, padded by (K−1)·d − p
//! on the leading side, with the spatially flipped kernel whose input and
//! output channels are swapped. The kernel gradient is candle's own.

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

#[derive(Debug, Clone, Copy)]
struct ConvParams {
    padding: usize,
    stride: usize,
    dilation: usize,
    /// False when the input needs no gradient (a network's first layer): its
    /// computation is skipped, which matters most there (a strided 7x7
    /// convolution over the full-size image).
    input_grad: bool,
}

struct Conv(ConvParams);

/// Inserts `s - 1` zeros between the elements of the last two dimensions.
fn dilate_zeros(g: &Tensor, s: usize) -> Result<Tensor> {
    if s == 1 {
        return Ok(g.clone());
    }
    let (n, c, h, w) = g.dims4()?;
    // (n, c, h, 1, w, 1) padded to (n, c, h, s, w, s), then cropped to (h-1)s+1.
    let g = g.reshape((n, c, h, 1, w, 1))?;
    let g = g.pad_with_zeros(5, 0, s - 1)?.pad_with_zeros(3, 0, s - 1)?;
    let g = g.reshape((n, c, h * s, w * s))?;
    g.narrow(2, 0, (h - 1) * s + 1)?.narrow(3, 0, (w - 1) * s + 1)
}

/// Pads (positive) or crops (negative) `lead` / `trail` elements of dimension `dim`.
fn pad_or_crop(x: &Tensor, dim: usize, lead: isize, trail: isize) -> Result<Tensor> {
    let mut x = x.clone();
    if lead < 0 {
        let n = x.dim(dim)?;
        x = x.narrow(dim, (-lead) as usize, n - (-lead) as usize)?;
    }
    if trail < 0 {
        let n = x.dim(dim)?;
        x = x.narrow(dim, 0, n - (-trail) as usize)?;
    }
    x.pad_with_zeros(dim, lead.max(0) as usize, trail.max(0) as usize)
}

pub(crate) fn input_grad(grad: &Tensor, w: &Tensor, in_h: usize, in_w: usize, p: usize, s: usize, d: usize) -> Result<Tensor> {
    let (_, _, kh, kw) = w.dims4()?;
    let z = dilate_zeros(grad, s)?;
    let (_, _, zh, zw) = z.dims4()?;
    let lead_h = ((kh - 1) * d) as isize - p as isize;
    let lead_w = ((kw - 1) * d) as isize - p as isize;
    let trail_h = (in_h + (kh - 1) * d) as isize - lead_h - zh as isize;
    let trail_w = (in_w + (kw - 1) * d) as isize - lead_w - zw as isize;
    let wf = w.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
    // Stride 1 with "same"-style padding (every 3x3 of a student): the padding
    // is equal on all four sides, so the unfolding pads as it reads instead
    // of the gradient being copied into a padded tensor first.
    if s == 1 && lead_h >= 0 && lead_h == trail_h && lead_h == lead_w && lead_w == trail_w {
        return conv_im2col(&z, &wf, lead_h as usize, 1, d);
    }
    let z = pad_or_crop(&pad_or_crop(&z, 2, lead_h, trail_h)?, 3, lead_w, trail_w)?;
    conv_im2col(&z, &wf, 0, 1, d)
}

/// Unfolds x (B, C, H, W) into (B, C*K*K, OH*OW) patch columns: row
/// (c, ky, kx) in the order of the weight's layout, column = output position.
#[allow(clippy::too_many_arguments)]
fn im2col_t(x: &[f32], dims: (usize, usize, usize, usize), kh: usize, kw: usize, oh: usize, ow: usize, p: usize, s: usize, d: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let (b, c, h, w) = dims;
    let rows = c * kh * kw;
    let l = oh * ow;
    let mut cols = vec![0f32; b * rows * l];
    cols.par_chunks_mut(l).enumerate().for_each(|(br, out)| {
        let (bi, r) = (br / rows, br % rows);
        let (ci, ky, kx) = (r / (kh * kw), (r / kw) % kh, r % kw);
        let plane = &x[(bi * c + ci) * h * w..(bi * c + ci + 1) * h * w];
        for oy in 0..oh {
            let y = (oy * s + ky * d) as isize - p as isize;
            if y < 0 || y as usize >= h {
                continue; // stays zero
            }
            let src = &plane[y as usize * w..(y as usize + 1) * w];
            let dst = &mut out[oy * ow..(oy + 1) * ow];
            let off = (kx * d) as isize - p as isize;
            for (ox, v) in dst.iter_mut().enumerate() {
                let xx = (ox * s) as isize + off;
                if xx >= 0 && (xx as usize) < w {
                    *v = src[xx as usize];
                }
            }
        }
    });
    cols
}

fn out_size(n: usize, k: usize, p: usize, s: usize, d: usize) -> Result<usize> {
    let span = d * (k - 1) + 1;
    if n + 2 * p < span {
        candle_core::bail!("conv2d: input of size {n} is smaller than the dilated kernel {span}");
    }
    Ok((n + 2 * p - span) / s + 1)
}

/// y_b = W (Cout, C*K*K) · cols_b (C*K*K, OH*OW): the convolution as one
/// batched matrix product over unfolded patches (1x1 stride-1 convolutions
/// need no unfolding).
fn conv_im2col(x: &Tensor, w: &Tensor, p: usize, s: usize, d: usize) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (cout, cin, kh, kw) = w.dims4()?;
    if cin != c {
        candle_core::bail!("conv2d: input has {c} channels, kernel expects {cin}");
    }
    let (oh, ow) = (out_size(h, kh, p, s, d)?, out_size(wd, kw, p, s, d)?);
    let wm = w.contiguous()?.reshape((1, cout, cin * kh * kw))?;
    let cols = if kh == 1 && kw == 1 && s == 1 && p == 0 {
        x.contiguous()?.reshape((b, c, h * wd))?
    } else {
        let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
        Tensor::from_vec(im2col_t(&xv, (b, c, h, wd), kh, kw, oh, ow, p, s, d), (b, cin * kh * kw, oh * ow), x.device())?
    };
    wm.broadcast_matmul(&cols)?.reshape((b, cout, oh, ow))
}

/// dW = Σ_b dY_b (Cout, L) · cols_bᵀ (L, C*K*K).
fn kernel_grad(x: &Tensor, w: &Tensor, grad: &Tensor, p: usize, s: usize, d: usize) -> Result<Tensor> {
    let (cout, cin, kh, kw) = w.dims4()?;
    let (b, c, h, wd) = x.dims4()?;
    let (_, _, oh, ow) = grad.dims4()?;
    let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let cols = Tensor::from_vec(im2col_t(&xv, (b, c, h, wd), kh, kw, oh, ow, p, s, d), (b, cin * kh * kw, oh * ow), x.device())?;
    let g = grad.contiguous()?.reshape((b, cout, oh * ow))?;
    g.matmul(&cols.transpose(1, 2)?)?.sum(0)?.reshape((cout, cin, kh, kw))
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "conv2d-fast-backward"
    }

    /// The forward pass: unfolded patches times the kernel matrix (a custom op
    /// sees storages, so the inputs are viewed as tensors and the result
    /// unwrapped).
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let view = |s: &CpuStorage, l: &Layout| -> Result<Tensor> {
            let CpuStorage::F32(d) = s else { candle_core::bail!("conv2d: only f32 is supported") };
            let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("conv2d: inputs must be contiguous") };
            Tensor::from_slice(&d[a..b], l.shape(), &Device::Cpu)
        };
        let ConvParams { padding, stride, dilation, .. } = self.0;
        let y = conv_im2col(&view(s1, l1)?, &view(s2, l2)?, padding, stride, dilation)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ConvParams { padding, stride, dilation, input_grad: want_gx } = self.0;
        let (_, _, h, wd) = x.dims4()?;
        let gx = if want_gx { Some(input_grad(grad, w, h, wd, padding, stride, dilation)?) } else { None };
        let gw = kernel_grad(x, w, grad, padding, stride, dilation)?;
        Ok((gx, Some(gw)))
    }
}

/// `x.conv2d(w, padding, stride, dilation, 1)` with the fast input gradient
/// on the CPU (elsewhere, and for other dtypes, candle's own op).
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize, dilation: usize) -> Result<Tensor> {
    conv2d_opts(x, w, padding, stride, dilation, true)
}

/// [`conv2d`] that can skip the input gradient (`input_grad = false` for a
/// first layer, whose input is data).
pub fn conv2d_opts(x: &Tensor, w: &Tensor, padding: usize, stride: usize, dilation: usize, input_grad: bool) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.conv2d(w, padding, stride, dilation, 1);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv(ConvParams { padding, stride, dilation, input_grad }))
}

/// A convolution layer (no groups) with candle-nn's initialisation and tensor
/// names (`weight`, `bias`), using [`conv2d`].
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
    dilation: usize,
    input_grad: bool,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(cin: usize, cout: usize, k: usize, padding: usize, stride: usize, dilation: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = if bias {
            let bound = 1.0 / ((cin * k * k) as f64).sqrt();
            Some(vb.get_with_hints(cout, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Self { weight, bias, padding, stride, dilation, input_grad: true })
    }

    /// For a network's first layer: no gradient is computed for its input.
    pub fn first_layer(mut self) -> Self {
        self.input_grad = false;
        self
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv2d_opts(x, &self.weight, self.padding, self.stride, self.dilation, self.input_grad)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

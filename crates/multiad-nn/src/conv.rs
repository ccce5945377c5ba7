//! 2-D convolution as unfolded patches times the kernel matrix (im2col +
//! gemm) in the forward pass and both backward passes. candle 0.11's own CPU
//! convolution spent half of a student training step in its tiled im2col,
//! and its input gradient is a direct-loop `conv_transpose2d`.
//!
//! For y[o] = Σ_k x[o·s + k·d − p] · w[k], the stride-1 input gradient is
//! dx[i] = Σ_k dy[i + p − k·d] · w[k]: a stride-1 correlation of dy, padded by
//! (K−1)·d − p on the leading side, with the spatially flipped kernel whose
//! input and output channels are swapped. A strided one is Wᵀ · dY folded
//! back onto the input (col2im), which never multiplies the zeros a
//! zero-dilated dy would hold. The kernel gradient is Σ_b dY_b · cols_bᵀ.
//! All three products call the `gemm` crate on the tensors' own buffers:
//! no copies of inputs or outputs around the custom op.

use candle_core::{CpuStorage, CustomOp2, Layout, Module, Result, Shape, Tensor};

use crate::cpu::{f32_values, with_f32};
use crate::sgemm;
use candle_nn::VarBuilder;
use gemm::Parallelism;
use rayon::prelude::*;

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
    if s > 1 {
        return input_grad_col2im(grad, w, in_h, in_w, p, s, d);
    }
    let (_, _, kh, kw) = w.dims4()?;
    let (_, _, gh, gw) = grad.dims4()?;
    let lead_h = ((kh - 1) * d) as isize - p as isize;
    let lead_w = ((kw - 1) * d) as isize - p as isize;
    let trail_h = (in_h + (kh - 1) * d) as isize - lead_h - gh as isize;
    let trail_w = (in_w + (kw - 1) * d) as isize - lead_w - gw as isize;
    let wf = w.flip(&[2, 3])?.transpose(0, 1)?.contiguous()?;
    // "Same"-style padding (every 3x3 of a student) is equal on all four
    // sides: the unfolding pads as it reads instead of the gradient being
    // copied into a padded tensor first.
    if lead_h >= 0 && lead_h == trail_h && lead_h == lead_w && lead_w == trail_w {
        return conv_im2col(grad, &wf, lead_h as usize, 1, d);
    }
    let z = pad_or_crop(&pad_or_crop(grad, 2, lead_h, trail_h)?, 3, lead_w, trail_w)?;
    conv_im2col(&z, &wf, 0, 1, d)
}

/// The input gradient of a strided convolution as the adjoint of the
/// unfolding: dcols_b = Wᵀ · dY_b, then every column entry added back onto
/// the input pixel it was read from. No zero-dilated map, so none of the
/// (s² − 1)/s² of multiplications by inserted zeros.
fn input_grad_col2im(grad: &Tensor, w: &Tensor, in_h: usize, in_w: usize, p: usize, s: usize, d: usize) -> Result<Tensor> {
    let (b, cout, oh, ow) = grad.dims4()?;
    let (_, cin, kh, kw) = w.dims4()?;
    let (k, l) = (cin * kh * kw, oh * ow);
    let (grad, w) = (grad.contiguous()?, w.contiguous()?);
    let mut dcols = vec![0f32; b * k * l];
    with_f32(&grad, "conv2d: gradient", |gv| {
        with_f32(&w, "conv2d: kernel", |wv| {
            // Wᵀ (k, cout): element (r, o) is W[o, r] at o·k + r.
            per_image(&mut dcols, k * l, gv, cout * l, |dc, gb, par| gemm_into(dc, l, k, l, cout, (wv, 1, k), (gb, l, 1), false, par));
            Ok(())
        })
    })?;
    let mut dx = vec![0f32; b * cin * in_h * in_w];
    dx.par_chunks_mut(in_h * in_w).enumerate().for_each(|(plane_index, plane)| {
        let (bi, ci) = (plane_index / cin, plane_index % cin);
        for ky in 0..kh {
            for kx in 0..kw {
                let row = (ci * kh + ky) * kw + kx;
                let src = &dcols[(bi * k + row) * l..(bi * k + row + 1) * l];
                for oy in 0..oh {
                    let y = (oy * s + ky * d) as isize - p as isize;
                    if y < 0 || y as usize >= in_h {
                        continue;
                    }
                    let dst = &mut plane[y as usize * in_w..(y as usize + 1) * in_w];
                    let off = (kx * d) as isize - p as isize;
                    for (ox, &v) in src[oy * ow..(oy + 1) * ow].iter().enumerate() {
                        let xx = (ox * s) as isize + off;
                        if xx >= 0 && (xx as usize) < in_w {
                            dst[xx as usize] += v;
                        }
                    }
                }
            }
        }
    });
    Tensor::from_vec(dx, (b, cin, in_h, in_w), grad.device())
}

/// The unfolding of one image for a convolution: which input pixel feeds
/// row (c, tap) of the patch matrix (the weight's order, live taps only) at
/// each output position.
#[derive(Clone)]
struct Unfold {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    p: usize,
    s: usize,
    d: usize,
    /// The taps (ky·kw + kx) that read inside the image at some output
    /// position. A dilated kernel that spans more than its input (rate 8
    /// on the 8x8 maps of the `paper` student's last stage) reads only
    /// padding with all but its centre tap: those rows of the patch matrix
    /// would be all zeros, so they are neither unfolded nor multiplied
    /// (9x fewer operations there), and their kernel gradient is zero.
    taps: Vec<usize>,
}

/// Bytes of patch matrix unfolded at a time. A whole image's patch matrix
/// is tens of MiB at 64x64 (9·C rows); unfolding a band of output rows into
/// one buffer that is reused keeps it in cache and spares the fresh, zeroed
/// allocation per call that cost ~5% of a `paper` step in page faults.
const TILE_BYTES: usize = 4 << 20;
/// Fewest output positions per band, so the product still amortises its
/// packing of the kernel matrix.
const MIN_TILE_COLUMNS: usize = 512;

/// Whether kernel offset `k` (in input pixels, before the padding is taken
/// off) reads inside an input of size `n` at any of `out` positions `s` apart.
fn tap_reaches_input(k: usize, p: usize, s: usize, n: usize, out: usize) -> bool {
    // The input index o·s + k − p grows with o: some o reads inside [0, n)
    // exactly when the first o at or past 0 still reads below n.
    let first = p.saturating_sub(k).div_ceil(s); // smallest o with o·s + k ≥ p
    first < out && first * s + k < p + n
}

impl Unfold {
    #[allow(clippy::too_many_arguments)]
    fn new(c: usize, h: usize, w: usize, kh: usize, kw: usize, oh: usize, ow: usize, p: usize, s: usize, d: usize) -> Self {
        let taps = (0..kh * kw).filter(|&t| tap_reaches_input((t / kw) * d, p, s, h, oh) && tap_reaches_input((t % kw) * d, p, s, w, ow)).collect();
        Self { c, h, w, kh, kw, oh, ow, p, s, d, taps }
    }

    /// Rows of the patch matrix (C · live taps).
    fn k(&self) -> usize {
        self.c * self.taps.len()
    }

    /// Every tap reads the image somewhere: the weight is used as it is.
    fn all_taps_live(&self) -> bool {
        self.taps.len() == self.kh * self.kw
    }

    /// The kernel (Cout, C, KH, KW) as the (Cout, C · live taps) matrix the
    /// patch matrix multiplies; borrowed when every tap is live.
    fn kernel_matrix<'a>(&self, w: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.all_taps_live() {
            return std::borrow::Cow::Borrowed(w);
        }
        let kk = self.kh * self.kw;
        let cols = w.chunks(kk).flat_map(|per_channel| self.taps.iter().map(move |&t| per_channel[t])).collect();
        std::borrow::Cow::Owned(cols)
    }

    /// The inverse of [`Self::kernel_matrix`] for a gradient: zeros at the dead taps.
    fn scatter_kernel(&self, compact: Vec<f32>) -> Vec<f32> {
        if self.all_taps_live() {
            return compact;
        }
        let (kk, nt) = (self.kh * self.kw, self.taps.len());
        let mut full = vec![0f32; compact.len() / nt * kk];
        for (dst, src) in full.chunks_mut(kk).zip(compact.chunks(nt)) {
            for (&t, &v) in self.taps.iter().zip(src) {
                dst[t] = v;
            }
        }
        full
    }

    /// A 1x1 stride-1 unpadded convolution: the image is its own patch matrix.
    fn is_identity(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.s == 1 && self.p == 0
    }

    /// Output rows per band.
    fn band_rows(&self) -> usize {
        let cols = (TILE_BYTES / (4 * self.k())).max(MIN_TILE_COLUMNS);
        (cols / self.ow).clamp(1, self.oh)
    }

    /// The bands: (first output row, output rows).
    fn bands(&self) -> impl Iterator<Item = (usize, usize)> {
        let (rows, oh) = (self.band_rows(), self.oh);
        (0..oh).step_by(rows).map(move |y0| (y0, rows.min(oh - y0)))
    }

    /// Writes every element of the (C·K·K, rows·OW) patch matrix of output
    /// rows y0.. of image `x` (C, H, W) into `cols`: zero where the patch
    /// reaches outside the image.
    fn band(&self, x: &[f32], y0: usize, rows: usize, cols: &mut [f32], par: Parallelism) {
        let n = rows * self.ow;
        let fill = |(r, out): (usize, &mut [f32])| self.row(x, r, y0, out);
        if matches!(par, Parallelism::None) {
            cols[..self.k() * n].chunks_mut(n).enumerate().for_each(fill);
        } else {
            cols[..self.k() * n].par_chunks_mut(n).enumerate().for_each(fill);
        }
    }

    fn row(&self, x: &[f32], r: usize, y0: usize, out: &mut [f32]) {
        let Unfold { h, w, kw, ow, p, s, d, .. } = *self;
        let nt = self.taps.len();
        let (ci, tap) = (r / nt, self.taps[r % nt]);
        let (ky, kx) = (tap / kw, tap % kw);
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        let off = (kx * d) as isize - p as isize;
        for (t, dst) in out.chunks_mut(ow).enumerate() {
            let y = ((y0 + t) * s + ky * d) as isize - p as isize;
            if y < 0 || y as usize >= h {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[y as usize * w..(y as usize + 1) * w];
            // Output positions whose input column ox·s + off lies inside the row.
            let first = |bound: isize| -> usize { (if bound <= 0 { 0 } else { (bound as usize).div_ceil(s) }).min(ow) };
            let lo = first(-off);
            let hi = first(w as isize - off).max(lo);
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            let start = (lo * s) as isize + off;
            if hi > lo {
                let start = start as usize;
                if s == 1 {
                    dst[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                } else if s == 2 {
                    // Pairs, so that the even-element gather vectorises
                    // (step_by(2) did not); the last element alone, as its
                    // pair may run past the row.
                    let n = hi - lo;
                    for (v, pair) in dst[lo..hi - 1].iter_mut().zip(src[start..start + 2 * (n - 1)].chunks_exact(2)) {
                        *v = pair[0];
                    }
                    dst[hi - 1] = src[start + 2 * (n - 1)];
                } else {
                    for (v, &x) in dst[lo..hi].iter_mut().zip(src[start..].iter().step_by(s)) {
                        *v = x;
                    }
                }
            }
        }
    }
}

fn out_size(n: usize, k: usize, p: usize, s: usize, d: usize) -> Result<usize> {
    let span = d * (k - 1) + 1;
    if n + 2 * p < span {
        candle_core::bail!("conv2d: input of size {n} is smaller than the dilated kernel {span}");
    }
    Ok((n + 2 * p - span) / s + 1)
}

/// dst (m, n) = lhs (m, k) · rhs (k, n) (+ dst when `accumulate`); dst's
/// rows are `dst_rs` apart, lhs and rhs are given by their row and column
/// strides. Through [`crate::sgemm`] (the `gemm` crate unless `MULTIAD_GEMM` says).
#[allow(clippy::too_many_arguments)]
fn gemm_into(
    dst: &mut [f32],
    dst_rs: usize,
    m: usize,
    n: usize,
    k: usize,
    lhs: (&[f32], usize, usize),
    rhs: (&[f32], usize, usize),
    accumulate: bool,
    par: Parallelism,
) {
    let a = sgemm::Mat { data: lhs.0, rs: lhs.1, cs: lhs.2 };
    let b = sgemm::Mat { data: rhs.0, rs: rhs.1, cs: rhs.2 };
    sgemm::gemm(sgemm::Backend::chosen(), dst, dst_rs, m, n, k, a, b, accumulate, par);
}

/// One product per image: `product(dst_b, src_b, parallelism)` over matching
/// chunks. With at least as many images as threads each thread takes whole
/// images (no synchronisation inside a product); otherwise every product is
/// split across the threads.
fn per_image(dst: &mut [f32], dst_chunk: usize, src: &[f32], src_chunk: usize, product: impl Fn(&mut [f32], &[f32], Parallelism) + Sync) {
    let threads = rayon::current_num_threads();
    let images = dst.len() / dst_chunk.max(1);
    if images >= threads && threads > 1 {
        dst.par_chunks_mut(dst_chunk).zip(src.par_chunks(src_chunk)).for_each(|(o, i)| product(o, i, Parallelism::None));
    } else {
        for (o, i) in dst.chunks_mut(dst_chunk).zip(src.chunks(src_chunk)) {
            product(o, i, Parallelism::Rayon(threads));
        }
    }
}

/// y_b = W (Cout, C*K*K) · cols_b (C*K*K, OH*OW), written straight into the
/// output buffer, band by band of output rows (1x1 stride-1 convolutions
/// need no unfolding: x_b is its own patch matrix).
fn conv_forward(
    x: &[f32],
    xd: (usize, usize, usize, usize),
    w: &[f32],
    wd: (usize, usize, usize, usize),
    p: usize,
    s: usize,
    d: usize,
) -> Result<(Vec<f32>, Shape)> {
    let (b, c, h, wid) = xd;
    let (cout, cin, kh, kw) = wd;
    if cin != c {
        candle_core::bail!("conv2d: input has {c} channels, kernel expects {cin}");
    }
    let (oh, ow) = (out_size(h, kh, p, s, d)?, out_size(wid, kw, p, s, d)?);
    let u = Unfold::new(c, h, wid, kh, kw, oh, ow, p, s, d);
    let (k, l) = (u.k(), oh * ow);
    let mut y = vec![0f32; b * cout * l];
    let w = &*u.kernel_matrix(w);
    if u.is_identity() {
        per_image(&mut y, cout * l, x, c * h * wid, |yb, xb, par| gemm_into(yb, l, cout, l, k, (w, k, 1), (xb, l, 1), false, par));
    } else {
        per_image(&mut y, cout * l, x, c * h * wid, |yb, xb, par| {
            let mut cols = vec![0f32; k * u.band_rows() * ow];
            for (y0, rows) in u.bands() {
                let n = rows * ow;
                u.band(xb, y0, rows, &mut cols, par);
                gemm_into(&mut yb[y0 * ow..], l, cout, n, k, (w, k, 1), (&cols[..k * n], n, 1), false, par);
            }
        });
    }
    Ok((y, Shape::from((b, cout, oh, ow))))
}

fn conv_im2col(x: &Tensor, w: &Tensor, p: usize, s: usize, d: usize) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let (y, shape) = with_f32(&x, "conv2d: input", |xv| with_f32(&w, "conv2d: kernel", |wv| conv_forward(xv, x.dims4()?, wv, w.dims4()?, p, s, d)))?;
    Tensor::from_vec(y, shape, x.device())
}

/// dW = Σ_b dY_b (Cout, L) · cols_bᵀ (L, C*K*K), accumulated in place band
/// by band of output rows.
fn kernel_grad(x: &Tensor, w: &Tensor, grad: &Tensor, p: usize, s: usize, d: usize) -> Result<Tensor> {
    let (cout, cin, kh, kw) = w.dims4()?;
    let (_, c, h, wid) = x.dims4()?;
    let (_, _, oh, ow) = grad.dims4()?;
    let (x, grad) = (x.contiguous()?, grad.contiguous()?);
    let par = Parallelism::Rayon(rayon::current_num_threads());
    let u = Unfold::new(c, h, wid, kh, kw, oh, ow, p, s, d);
    debug_assert_eq!(c, cin);
    let (k, l) = (u.k(), oh * ow);
    let mut dw = vec![0f32; cout * k];
    let direct = u.is_identity();
    let mut cols = if direct { Vec::new() } else { vec![0f32; k * u.band_rows() * ow] };
    let mut first = true;
    with_f32(&x, "conv2d: input", |xv| {
        with_f32(&grad, "conv2d: gradient", |gv| {
            for (gb, xb) in gv.chunks(cout * l).zip(xv.chunks(c * h * wid)) {
                if direct {
                    // x_bᵀ: element (position, channel) sits at channel·l + position.
                    gemm_into(&mut dw, k, cout, k, l, (gb, l, 1), (xb, 1, l), !first, par);
                    first = false;
                    continue;
                }
                for (y0, rows) in u.bands() {
                    let n = rows * ow;
                    u.band(xb, y0, rows, &mut cols, par);
                    // colsᵀ: element (position, row) of the (k, n) band sits at row·n + position.
                    gemm_into(&mut dw, k, cout, k, n, (&gb[y0 * ow..], l, 1), (&cols[..k * n], 1, n), !first, par);
                    first = false;
                }
            }
            Ok(())
        })
    })?;
    Tensor::from_vec(u.scatter_kernel(dw), (cout, cin, kh, kw), w.device())
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "conv2d-fast-backward"
    }

    /// The forward pass: unfolded patches times the kernel matrix, read from
    /// and written to the storages directly.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (xd, wd) = (f32_values(s1, l1, "conv2d: input")?, f32_values(s2, l2, "conv2d: kernel")?);
        let ConvParams { padding, stride, dilation, .. } = self.0;
        let (y, shape) = conv_forward(xd, l1.shape().dims4()?, wd, l2.shape().dims4()?, padding, stride, dilation)?;
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ConvParams { padding, stride, dilation, input_grad: want_gx } = self.0;
        let (_, _, h, wd) = x.dims4()?;
        // No input gradient for a first layer; no kernel gradient for a
        // frozen kernel (a backbone's, in saliency backward passes).
        let gx = if want_gx && x.track_op() { Some(input_grad(grad, w, h, wd, padding, stride, dilation)?) } else { None };
        let gw = if w.track_op() { Some(kernel_grad(x, w, grad, padding, stride, dilation)?) } else { None };
        Ok((gx, gw))
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
    if !crate::device::cpu_kernels_apply(&[x, w]) {
        return crate::generic::conv2d(x, w, padding, stride, dilation);
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

/// What a [`Conv2d`] is: channels, a square kernel, and its geometry.
/// `ConvSpec::new(cin, cout, k)` is stride 1, dilation 1, no bias and the
/// padding that keeps the size (k / 2); the builder methods change one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub padding: usize,
    pub stride: usize,
    pub dilation: usize,
    pub bias: bool,
}

impl ConvSpec {
    pub fn new(cin: usize, cout: usize, kernel: usize) -> Self {
        Self { cin, cout, kernel, padding: kernel / 2, stride: 1, dilation: 1, bias: false }
    }

    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    pub fn dilation(self, dilation: usize) -> Self {
        Self { dilation, ..self }
    }

    pub fn bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }
}

impl Conv2d {
    pub fn new(spec: ConvSpec, vb: VarBuilder) -> Result<Self> {
        let ConvSpec { cin, cout, kernel: k, padding, stride, dilation, bias } = spec;
        let weight = vb.get_with_hints((cout, cin, k, k), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        let bias = if bias {
            let bound = 1.0 / ((cin * k * k) as f64).sqrt();
            Some(vb.get_with_hints(cout, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?)
        } else {
            None
        };
        Ok(Self { weight, bias, padding, stride, dilation, input_grad: true })
    }

    /// The kernel, (cout, cin, k, k).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The convolution with another kernel of the same shape in place of
    /// the layer's own (a reparametrised one, e.g. spectrally normalised).
    pub fn forward_with_kernel(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let y = conv2d_opts(x, w, self.padding, self.stride, self.dilation, self.input_grad)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// For a network's first layer: no gradient is computed for its input.
    pub fn first_layer(mut self) -> Self {
        self.input_grad = false;
        self
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with_kernel(x, &self.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::tap_reaches_input;

    #[test]
    fn live_taps_are_those_some_output_position_reads_inside_the_input() {
        for n in 1..12 {
            for out in 1..12 {
                for s in 1..4 {
                    for p in 0..10 {
                        for k in 0..20 {
                            let brute = (0..out).any(|o| {
                                let i = (o * s + k) as isize - p as isize;
                                i >= 0 && (i as usize) < n
                            });
                            assert_eq!(tap_reaches_input(k, p, s, n, out), brute, "k {k} p {p} s {s} n {n} out {out}");
                        }
                    }
                }
            }
        }
    }
}

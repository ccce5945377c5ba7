//! Separable linear resampling: `Y = A · X · Bᵀ` per (batch, channel) plane,
//! with `A` (out_h x in_h) and `B` (out_w x in_w) built on the host. Bilinear
//! interpolation and Gaussian smoothing are both of this form, so one matmul
//! pair gives the forward pass and candle's autograd the backward pass, on
//! every device. On the CPU in f32 bilinear resizing is a direct two-tap
//! kernel instead (with the transposed kernel as its backward): the dense
//! matrices multiplied mostly zeros and needed two transposed copies.
//! The matrices are built in f64 and take the input's dtype when applied,
//! so that a float64 network (`device::with_float64`) resamples exactly.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Interpolation weights of PyTorch's bilinear resize with
/// `align_corners=False` and no antialiasing, as an (out x inp) row-major matrix.
pub fn bilinear_matrix(out: usize, inp: usize) -> Vec<f64> {
    let mut m = vec![0f64; out * inp];
    let scale = inp as f64 / out as f64;
    for i in 0..out {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        let l1 = src - i0 as f64;
        m[i * inp + i0] += 1.0 - l1;
        m[i * inp + i1] += l1;
    }
    m
}

/// Bilinear interpolation weights, (out x inp) row-major, for a grid of
/// `inp` cells whose cell i is centred on output pixel `first + i · out/inp`
/// (a network's receptive-field centres, not the half-pixel convention):
/// output pixel p reads source position (p − first) · inp/out, clamped to
/// the outermost cells. `first` = (out/inp − 1)/2 gives [`bilinear_matrix`].
pub fn bilinear_matrix_centred(out: usize, inp: usize, first: f64) -> Vec<f64> {
    let mut m = vec![0f64; out * inp];
    let step = out as f64 / inp as f64;
    for i in 0..out {
        let src = ((i as f64 - first) / step).clamp(0.0, (inp - 1) as f64);
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        let l1 = src - i0 as f64;
        m[i * inp + i0] += 1.0 - l1;
        m[i * inp + i1] += l1;
    }
    m
}

/// The kernel size anomalib and kornia use for a Gaussian of `sigma`:
/// 2 * int(4 * sigma + 0.5) + 1 (33 for sigma = 4).
pub fn gaussian_kernel_size(sigma: f64) -> usize {
    2 * (4.0 * sigma + 0.5) as usize + 1
}

/// Maps an index outside [0, n) back inside by mirroring without repeating the
/// edge (`[d c b | a b c d | c b a]`), PyTorch's `reflect` padding.
fn reflect(mut j: i64, n: i64) -> usize {
    if n == 1 {
        return 0;
    }
    loop {
        if j < 0 {
            j = -j;
        } else if j >= n {
            j = 2 * (n - 1) - j;
        } else {
            return j as usize;
        }
    }
}

/// Pads the last two dimensions of a (N, C, H, W) tensor by `pad` on every
/// side, mirroring without repeating the edge (PyTorch's `reflect` mode).
/// A gather (index_select), so it runs on every device and dtype and passes
/// gradients back to the pixels it copied.
pub fn reflect_pad2d(x: &Tensor, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let (_, _, h, w) = x.dims4()?;
    if pad >= h || pad >= w {
        candle_core::bail!("reflect padding of {pad} px needs a larger input than {h}x{w}");
    }
    let index = |n: usize| -> Result<Tensor> {
        let ids: Vec<u32> = (0..n + 2 * pad).map(|k| reflect(k as i64 - pad as i64, n as i64) as u32).collect();
        Tensor::from_vec(ids, n + 2 * pad, x.device())
    };
    x.index_select(&index(h)?, 2)?.index_select(&index(w)?, 3)
}

/// Gaussian smoothing along one axis of length n with reflect borders, as an
/// (n x n) matrix.
pub fn gaussian_matrix(n: usize, sigma: f64) -> Vec<f64> {
    let k = gaussian_kernel_size(sigma);
    let r = (k / 2) as i64;
    let w: Vec<f64> = (-r..=r).map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = w.iter().sum();
    let mut m = vec![0f64; n * n];
    for i in 0..n {
        for (t, wt) in w.iter().enumerate() {
            let j = reflect(i as i64 + t as i64 - r, n as i64);
            m[i * n + j] += wt / total;
        }
    }
    m
}

/// `A · X · Bᵀ` on the last two dimensions of a (N, C, H, W) tensor.
pub fn separable(x: &Tensor, a: &[f64], out_h: usize, b: &[f64], out_w: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let dev: &Device = x.device();
    let bt = Tensor::from_slice(b, (out_w, w), dev)?.to_dtype(x.dtype())?.t()?;
    let at = Tensor::from_slice(a, (out_h, h), dev)?.to_dtype(x.dtype())?.t()?;
    // Rows first: (N*C*H, W) @ (W, out_w).
    let y = x.reshape((n * c * h, w))?.matmul(&bt)?;
    // Then columns: bring H last, (N*C*out_w, H) @ (H, out_h), and back.
    let y = y.reshape((n * c, h, out_w))?.transpose(1, 2)?.contiguous()?;
    let y = y.reshape((n * c * out_w, h))?.matmul(&at)?;
    y.reshape((n, c, out_w, out_h))?.transpose(2, 3)?.contiguous()
}

/// One output index's two taps: (first input, second input, their weights).
type Tap = (usize, usize, f32, f32);

/// The taps of each output index along one axis, the rows of
/// [`bilinear_matrix`].
fn bilinear_taps(out: usize, inp: usize) -> Vec<Tap> {
    let scale = inp as f64 / out as f64;
    (0..out)
        .map(|i| {
            let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(inp - 1);
            let i1 = (i0 + 1).min(inp - 1);
            let l1 = (src - i0 as f64) as f32;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// Bilinear resize of each (H, W) plane: rows interpolated along W once per
/// input row, then output rows blended from two of those.
#[derive(Clone, Copy)]
struct Bilinear {
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
}

impl Bilinear {
    /// The row taps and the column taps.
    fn taps(&self) -> (Vec<Tap>, Vec<Tap>) {
        (bilinear_taps(self.out_h, self.h), bilinear_taps(self.out_w, self.w))
    }

    /// `each(out, plane, wide)` for every plane of `x` (`plane_len` values)
    /// in parallel, into a zeroed `out` of `out_len` values, with a zeroed
    /// H x out_W scratch `wide` (the row-interpolated intermediate).
    fn per_plane(&self, x: &[f32], plane_len: usize, out_len: usize, each: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync) -> Vec<f32> {
        let mut y = vec![0f32; x.len() / plane_len * out_len];
        y.par_chunks_mut(out_len).zip(x.par_chunks(plane_len)).for_each(|(out, plane)| each(out, plane, &mut vec![0f32; self.h * self.out_w]));
        y
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let (rows, cols) = self.taps();
        self.per_plane(x, self.h * self.w, self.out_h * self.out_w, |out, plane, wide| {
            for (dst, src) in wide.chunks_exact_mut(self.out_w).zip(plane.chunks_exact(self.w)) {
                for (d, &(j0, j1, a, b)) in dst.iter_mut().zip(&cols) {
                    *d = a * src[j0] + b * src[j1];
                }
            }
            for (dst, &(i0, i1, a, b)) in out.chunks_exact_mut(self.out_w).zip(&rows) {
                let (r0, r1) = (&wide[i0 * self.out_w..(i0 + 1) * self.out_w], &wide[i1 * self.out_w..(i1 + 1) * self.out_w]);
                for ((d, &u), &v) in dst.iter_mut().zip(r0).zip(r1) {
                    *d = a * u + b * v;
                }
            }
        })
    }

    /// The transpose: each output gradient spread back onto its four inputs
    /// (rows first, then columns).
    fn backward(&self, dy: &[f32]) -> Vec<f32> {
        let (rows, cols) = self.taps();
        self.per_plane(dy, self.out_h * self.out_w, self.h * self.w, |gin, gout, wide| {
            for (src, &(i0, i1, a, b)) in gout.chunks_exact(self.out_w).zip(&rows) {
                for (j, &g) in src.iter().enumerate() {
                    wide[i0 * self.out_w + j] += a * g;
                    wide[i1 * self.out_w + j] += b * g;
                }
            }
            for (dst, src) in gin.chunks_exact_mut(self.w).zip(wide.chunks_exact(self.out_w)) {
                for (&g, &(j0, j1, a, b)) in src.iter().zip(&cols) {
                    dst[j0] += a * g;
                    dst[j1] += b * g;
                }
            }
        })
    }

    fn out_shape(&self, x: &Shape) -> Result<Shape> {
        let (n, c, _, _) = x.dims4()?;
        Ok(Shape::from((n, c, self.out_h, self.out_w)))
    }
}

/// The backward pass as an op of its own (its input: the output gradient).
struct BilinearGrad(Bilinear);

impl CustomOp1 for Bilinear {
    fn name(&self) -> &'static str {
        "resize-bilinear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = crate::cpu::f32_values(s, l, "resize bilinear: input")?;
        Ok((CpuStorage::F32(self.forward(x)), self.out_shape(l.shape())?))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = BilinearGrad(*self);
        let dx = grad.contiguous()?.apply_op1_no_bwd(&op)?;
        Ok(Some(dx.reshape(x.shape())?))
    }
}

impl CustomOp1 for BilinearGrad {
    fn name(&self) -> &'static str {
        "resize-bilinear-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dy = crate::cpu::f32_values(s, l, "resize bilinear backward: gradient")?;
        let (n, c, _, _) = l.shape().dims4()?;
        Ok((CpuStorage::F32(self.0.backward(dy)), Shape::from((n, c, self.0.h, self.0.w))))
    }
}

/// Bilinear resize of a (N, C, H, W) tensor to (N, C, out_h, out_w), matching
/// PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`; differentiable.
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
        candle_core::bail!("resize bilinear: cannot resize {h}x{w} to {out_h}x{out_w}");
    }
    if crate::device::cpu_kernels_apply(&[x]) {
        return x.contiguous()?.apply_op1(Bilinear { h, w, out_h, out_w });
    }
    resize_bilinear_separable(x, out_h, out_w)
}

/// The same resize as two matrix products (any device; the tests' reference).
pub fn resize_bilinear_separable(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    separable(x, &bilinear_matrix(out_h, h), out_h, &bilinear_matrix(out_w, w), out_w)
}

/// Bilinear resize of a (N, C, H, W) tensor whose cells are centred at
/// `first_h + i · out_h/H` (rows) and `first_w + j · out_w/W` (columns) of the
/// output; see [`bilinear_matrix_centred`]. Differentiable, any device.
pub fn resize_bilinear_centred(x: &Tensor, out_h: usize, out_w: usize, first_h: f64, first_w: f64) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
        candle_core::bail!("resize bilinear: cannot resize {h}x{w} to {out_h}x{out_w}");
    }
    separable(x, &bilinear_matrix_centred(out_h, h, first_h), out_h, &bilinear_matrix_centred(out_w, w, first_w), out_w)
}

/// Gaussian smoothing of a (N, C, H, W) tensor with standard deviation
/// `sigma` (pixels), kernel size 2 * int(4 sigma + 0.5) + 1, reflect borders,
/// as anomalib's `GaussianBlur2d`; differentiable.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Result<Tensor> {
    if sigma <= 0.0 {
        return Ok(x.clone());
    }
    let (_, _, h, w) = x.dims4()?;
    separable(x, &gaussian_matrix(h, sigma), h, &gaussian_matrix(w, sigma), w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_rows_sum_to_one_and_match_pytorch_by_hand() {
        // torch.nn.functional.interpolate(torch.arange(4.).view(1,1,1,4), size=(1,8), mode="bilinear")
        // -> [0, .25, .75, 1.25, 1.75, 2.25, 2.75, 3]
        let m = bilinear_matrix(8, 4);
        let x = [0.0f64, 1.0, 2.0, 3.0];
        let y: Vec<f64> = (0..8).map(|i| (0..4).map(|j| m[i * 4 + j] * x[j]).sum()).collect();
        assert_eq!(y, vec![0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]);
        // Downsampling by 2 averages neighbours: [0.5, 2.5].
        let m = bilinear_matrix(2, 4);
        let y: Vec<f64> = (0..2).map(|i| (0..4).map(|j| m[i * 4 + j] * x[j]).sum()).collect();
        assert_eq!(y, vec![0.5, 2.5]);
    }

    #[test]
    fn centred_bilinear_puts_each_cell_on_its_centre() {
        // The half-pixel origin is PyTorch's resize exactly.
        for (out, inp) in [(8, 4), (256, 8), (256, 64), (7, 3)] {
            let a = bilinear_matrix(out, inp);
            let b = bilinear_matrix_centred(out, inp, (out as f64 / inp as f64 - 1.0) / 2.0);
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-12), "{out} {inp}");
        }
        // TF "SAME" stride 4: cell i is centred on pixel 4i + 3, so pixel
        // 4i + 3 reads cell i alone, and the pixels before 3 read cell 0.
        let m = bilinear_matrix_centred(16, 4, 3.0);
        for i in 0..4 {
            assert_eq!(m[(4 * i + 3) * 4 + i], 1.0);
        }
        assert_eq!(m[4], 1.0);
        assert_eq!(m[(5) * 4], 0.5);
        assert_eq!(m[(5) * 4 + 1], 0.5);
    }

    #[test]
    fn gaussian_preserves_constants_and_mass_position() {
        assert_eq!(gaussian_kernel_size(4.0), 33);
        let m = gaussian_matrix(40, 4.0);
        for i in 0..40 {
            let s: f64 = m[i * 40..(i + 1) * 40].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
        // Symmetric in the interior.
        assert!((m[20 * 40 + 17] - m[20 * 40 + 23]).abs() < 1e-15);
        assert_eq!(reflect(-1, 5), 1);
        assert_eq!(reflect(5, 5), 3);
        assert_eq!(reflect(-7, 5), 1);
    }

    #[test]
    fn reflect_padding_mirrors_without_repeating_the_edge() {
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((1, 1, 3, 4)).unwrap();
        let y = reflect_pad2d(&x, 2).unwrap();
        assert_eq!(y.dims4().unwrap(), (1, 1, 7, 8));
        // Row 0 of the padded tensor is image row 2, its column 0 image column 2.
        let rows: Vec<Vec<f32>> = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(rows[0], vec![10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.0, 9.0]);
        assert_eq!(rows[2][2..6], [0.0, 1.0, 2.0, 3.0]);
        assert!(reflect_pad2d(&x, 3).is_err());
    }
}

//! Max pooling with padding and any kernel/stride, with a backward pass
//! (candle 0.11 has neither padding nor the backward for kernel != stride).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Geometry {
    k: usize,
    s: usize,
    p: usize,
}

impl Geometry {
    fn out(&self, n: usize) -> usize {
        (n + 2 * self.p - self.k) / self.s + 1
    }

    /// The input indices along one axis that window `o` covers (the window
    /// clipped to the image: padding never wins, PyTorch's semantics).
    #[inline]
    fn window(&self, o: usize, n: usize) -> std::ops::Range<usize> {
        let start = o * self.s;
        start.saturating_sub(self.p)..(start + self.k).saturating_sub(self.p).min(n)
    }
}

/// max that keeps a NaN (PyTorch's pooling propagates them; training stops
/// on non-finite values, so pooling must not hide one).
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    crate::cpu::f32_values(s, l, &format!("{what}: input"))
}

struct MaxPool(Geometry);
struct MaxPoolBackward(Geometry);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "max-pool2d-padded"
    }

    /// Separable: the maximum over each row's window columns first (one
    /// row of h x ow per input row), then over the window rows, a
    /// vectorisable pass over whole output rows.
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, self.name())?;
        let g = self.0;
        let (oh, ow) = (g.out(h), g.out(w));
        let cols: Vec<std::ops::Range<usize>> = (0..ow).map(|ox| g.window(ox, w)).collect();
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(o, plane)| {
            let mut rows = vec![f32::NEG_INFINITY; h * ow];
            for (r, src) in rows.chunks_exact_mut(ow).zip(plane.chunks_exact(w)) {
                for (m, span) in r.iter_mut().zip(&cols) {
                    *m = src[span.clone()].iter().fold(f32::NEG_INFINITY, |a, &b| nan_max(a, b));
                }
            }
            for (oy, dst) in o.chunks_exact_mut(ow).enumerate() {
                dst.fill(f32::NEG_INFINITY);
                for y in g.window(oy, h) {
                    for (d, &v) in dst.iter_mut().zip(&rows[y * ow..(y + 1) * ow]) {
                        *d = nan_max(*d, v);
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = arg.apply_op3_no_bwd(&res.contiguous()?, &grad.contiguous()?, &MaxPoolBackward(self.0))?;
        Ok(Some(g))
    }
}

impl CustomOp3 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max-pool2d-padded-backward"
    }

    /// Routes each output gradient to the first input of its window (in
    /// row-major order) that equals the window's maximum, the forward
    /// result: PyTorch's first-maximum rule, without redoing the maximum.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let x = f32_slice(s1, l1, self.name())?;
        let y = f32_slice(s2, l2, self.name())?;
        let gy = f32_slice(s3, l3, self.name())?;
        let g = self.0;
        let (oh, ow) = (g.out(h), g.out(w));
        let cols: Vec<std::ops::Range<usize>> = (0..ow).map(|ox| g.window(ox, w)).collect();
        let mut gx = vec![0f32; n * c * h * w];
        gx.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).zip(y.par_chunks(oh * ow).zip(gy.par_chunks(oh * ow))).for_each(|((gp, plane), (yp, go))| {
            for oy in 0..oh {
                let rows = g.window(oy, h);
                for (ox, span) in cols.iter().enumerate() {
                    let m = yp[oy * ow + ox];
                    let hit = |v: f32| v == m || (m.is_nan() && v.is_nan());
                    let at = rows.clone().find_map(|r| span.clone().find(|&i| hit(plane[r * w + i])).map(|i| r * w + i));
                    if let Some(i) = at {
                        gp[i] += go[oy * ow + ox];
                    }
                }
            }
        });
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

/// Max pooling of a (N, C, H, W) f32 tensor with `kernel`, `stride` and
/// implicit -inf `padding` (PyTorch's `nn.MaxPool2d(kernel, stride, padding)`),
/// differentiable. Our kernel on the CPU in f32; elsewhere [`crate::generic::max_pool2d`].
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        candle_core::bail!("max_pool2d: invalid kernel {kernel}, stride {stride}, padding {padding}");
    }
    let (_, _, h, w) = x.dims4()?;
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        candle_core::bail!("max_pool2d: input {h}x{w} is smaller than the kernel {kernel}");
    }
    if !crate::device::cpu_kernels_apply(&[x]) {
        let (rows, cols) = (crate::generic::Axis::symmetric(h, kernel, stride, padding)?, crate::generic::Axis::symmetric(w, kernel, stride, padding)?);
        return crate::generic::max_pool2d(x, kernel, stride, rows, cols);
    }
    x.contiguous()?.apply_op1(MaxPool(Geometry { k: kernel, s: stride, p: padding }))
}

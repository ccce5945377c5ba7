//! Max pooling with padding and any kernel/stride, with a backward pass
//! (candle 0.11 has neither padding nor the backward for kernel != stride).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
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

    /// Index (into the h x w plane) of the first maximum of the window of
    /// output position (oy, ox); padding never wins (PyTorch semantics).
    #[inline]
    fn argmax(&self, plane: &[f32], h: usize, w: usize, oy: usize, ox: usize) -> usize {
        // The window clipped to the image once, so the scan has no bounds tests.
        let clip = |o: usize, n: usize| {
            let start = (o * self.s) as isize - self.p as isize;
            let lo = (-start).max(0) as usize;
            let hi = (n as isize - start).clamp(0, self.k as isize) as usize;
            (start, lo, hi)
        };
        let (y0, ylo, yhi) = clip(oy, h);
        let (x0, xlo, xhi) = clip(ox, w);
        let mut best = usize::MAX;
        let mut bv = f32::NEG_INFINITY;
        for dy in ylo..yhi {
            let row = (y0 + dy as isize) as usize * w;
            for dx in xlo..xhi {
                let i = row + (x0 + dx as isize) as usize;
                let v = plane[i];
                if best == usize::MAX || v > bv || v.is_nan() {
                    best = i;
                    bv = v;
                }
            }
        }
        best
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

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, self.name())?;
        let g = self.0;
        let (oh, ow) = (g.out(h), g.out(w));
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(o, plane)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    o[oy * ow + ox] = plane[g.argmax(plane, h, w, oy, ox)];
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = arg.apply_op2_no_bwd(&grad.contiguous()?, &MaxPoolBackward(self.0))?;
        Ok(Some(g))
    }
}

impl CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max-pool2d-padded-backward"
    }

    /// Routes each output gradient to the input position that won its window.
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let x = f32_slice(s1, l1, self.name())?;
        let gy = f32_slice(s2, l2, self.name())?;
        let g = self.0;
        let (oh, ow) = (g.out(h), g.out(w));
        let mut gx = vec![0f32; n * c * h * w];
        gx.par_chunks_mut(h * w).zip(x.par_chunks(h * w)).zip(gy.par_chunks(oh * ow)).for_each(|((gp, plane), go)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    gp[g.argmax(plane, h, w, oy, ox)] += go[oy * ow + ox];
                }
            }
        });
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}

/// Max pooling of a (N, C, H, W) f32 tensor with `kernel`, `stride` and
/// implicit -inf `padding` (PyTorch's `nn.MaxPool2d(kernel, stride, padding)`),
/// differentiable.
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if kernel == 0 || stride == 0 || 2 * padding > kernel {
        candle_core::bail!("max_pool2d: invalid kernel {kernel}, stride {stride}, padding {padding}");
    }
    let (_, _, h, w) = x.dims4()?;
    if h + 2 * padding < kernel || w + 2 * padding < kernel {
        candle_core::bail!("max_pool2d: input {h}x{w} is smaller than the kernel {kernel}");
    }
    x.contiguous()?.apply_op1(MaxPool(Geometry { k: kernel, s: stride, p: padding }))
}

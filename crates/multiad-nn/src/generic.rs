//! The generic paths of the window ops whose CPU kernels candle has no
//! counterpart for: padded max pooling with kernel != stride, and depthwise
//! convolution with TensorFlow's one-sided "SAME" padding; and candle's
//! convolution made safe to differentiate on non-square inputs. Each is a
//! composition of candle's own ops (pad, gather of strided taps, reduce),
//! so it runs on every device candle supports and autograd gives the
//! backward pass. On the CPU the kernels in [`crate::pool`] and
//! [`crate::depthwise`] are used instead; the tests compare the two.

use candle_core::{Result, Tensor, D};

/// `x` with `before` and `after` slices of `value` added along `dim`.
pub fn pad_with(x: &Tensor, dim: usize, before: usize, after: usize, value: f64) -> Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    let side = |n: usize| -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[dim] = n;
        Tensor::full(value, dims, x.device())?.to_dtype(x.dtype())
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(side(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(side(after)?);
    }
    Tensor::cat(&parts, dim)
}

/// Rows `first, first + stride, …` (`count` of them) of dimension `dim`.
fn strided(x: &Tensor, dim: usize, first: usize, stride: usize, count: usize) -> Result<Tensor> {
    if stride == 1 {
        return x.narrow(dim, first, count);
    }
    let idx: Vec<u32> = (0..count).map(|o| (first + o * stride) as u32).collect();
    x.index_select(&Tensor::new(idx.as_slice(), x.device())?, dim)
}

/// The input under kernel tap (ky, kx) for every output position of a
/// (N, C, H, W) tensor that is already padded: (N, C, oh, ow).
fn tap(padded: &Tensor, ky: usize, kx: usize, stride: usize, oh: usize, ow: usize) -> Result<Tensor> {
    strided(&strided(padded, 2, ky, stride, oh)?, 3, kx, stride, ow)
}

/// Padding (before, after) and output size of one axis.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub before: usize,
    pub after: usize,
    pub out: usize,
}

impl Axis {
    /// `p` on both sides: out = (n + 2p − k) / s + 1.
    pub fn symmetric(n: usize, k: usize, s: usize, p: usize) -> Result<Axis> {
        if n + 2 * p < k || s == 0 {
            candle_core::bail!("window of {k} (stride {s}, padding {p}) does not fit {n}");
        }
        Ok(Axis { before: p, after: p, out: (n + 2 * p - k) / s + 1 })
    }

    /// TensorFlow's "SAME": out = ceil(n / s), the odd padding after.
    pub fn same(n: usize, k: usize, s: usize) -> Result<Axis> {
        if s == 0 {
            candle_core::bail!("stride must be at least 1");
        }
        let out = n.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(n);
        Ok(Axis { before: total / 2, after: total - total / 2, out })
    }
}

/// Max pooling of (N, C, H, W) with a k x k window, `stride` and −∞
/// padding. The gradient goes to the first maximum of each window in row
/// order, as the CPU kernel's does.
pub fn max_pool2d(x: &Tensor, k: usize, stride: usize, rows: Axis, cols: Axis) -> Result<Tensor> {
    let padded = pad_with(&pad_with(x, 2, rows.before, rows.after, f64::NEG_INFINITY)?, 3, cols.before, cols.after, f64::NEG_INFINITY)?;
    let taps = (0..k * k).map(|t| tap(&padded, t / k, t % k, stride, rows.out, cols.out)).collect::<Result<Vec<_>>>()?;
    let stacked = Tensor::stack(&taps, 4)?.contiguous()?; // (N, C, oh, ow, k²)
    let first_max = stacked.argmax_keepdim(D::Minus1)?;
    stacked.gather(&first_max, D::Minus1)?.squeeze(D::Minus1)
}

/// Depthwise convolution of (N, C, H, W) with a (C, 1, k, k) kernel and
/// zero padding: Σ over taps of the tap's weight (per channel) times the
/// strided input under it.
pub fn depthwise_conv2d(x: &Tensor, w: &Tensor, stride: usize, rows: Axis, cols: Axis) -> Result<Tensor> {
    let (c, one, k, k2) = w.dims4()?;
    if one != 1 || k != k2 || c != x.dim(1)? {
        candle_core::bail!("depthwise conv2d: kernel {:?} for input {:?}", w.dims(), x.dims());
    }
    let padded = x.pad_with_zeros(2, rows.before, rows.after)?.pad_with_zeros(3, cols.before, cols.after)?;
    let per_tap = w.reshape((c, k * k))?;
    let terms = (0..k * k).map(|t| {
        let weight = per_tap.narrow(1, t, 1)?.reshape((1, c, 1, 1))?;
        tap(&padded, t / k, t % k, stride, rows.out, cols.out)?.broadcast_mul(&weight)
    });
    crate::sum_terms(terms, "kernel taps")
}

/// `x.conv2d(w, padding, stride, dilation, 1)`, with the zero padding made
/// explicit and the padded input cut to the rows and columns the windows
/// read. candle 0.11's backward of a convolution takes the transposed
/// convolution's output padding from the height alone, so an input whose
/// unread remainder differs between height and width (11 x 10 at stride 2)
/// fails there with a shape mismatch. Cut to what is read, both remainders
/// are 0, and the unread edge gets a zero gradient, as it should. Where the
/// remainders are equal, candle's op is called as it is.
pub fn conv2d(x: &Tensor, w: &Tensor, padding: usize, stride: usize, dilation: usize) -> Result<Tensor> {
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let read = |n: usize, k: usize| -> Option<usize> {
        let span = dilation * (k.max(1) - 1) + 1;
        let n = n + 2 * padding;
        (n >= span && stride > 0).then(|| ((n - span) / stride) * stride + span)
    };
    let (Some(rh), Some(rw)) = (read(h, kh), read(wd, kw)) else {
        return x.conv2d(w, padding, stride, dilation, 1); // candle names the bad geometry
    };
    // Equal unread remainders (every square input, every stride-1
    // convolution) are what candle's backward assumes: no copy needed.
    if h + 2 * padding - rh == wd + 2 * padding - rw {
        return x.conv2d(w, padding, stride, dilation, 1);
    }
    let padded = x.pad_with_zeros(2, padding, padding)?.pad_with_zeros(3, padding, padding)?;
    let cut = if (rh, rw) == (h + 2 * padding, wd + 2 * padding) { padded } else { padded.narrow(2, 0, rh)?.narrow(3, 0, rw)? };
    cut.conv2d(w, 0, stride, dilation, 1)
}

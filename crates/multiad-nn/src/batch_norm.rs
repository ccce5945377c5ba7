//! Batch normalisation with PyTorch's semantics (`nn.BatchNorm1d/2d`), its
//! training pass fused into one custom op. candle-nn's version builds the
//! normalisation from about ten tensor ops (a transposed copy, two means,
//! subtract, square, divide, scale, shift, and a transposed copy back), each
//! a pass over the activations with its own backward; in a student's
//! training step those passes cost more than the convolutions they follow.
//! Here the forward pass reads x twice (statistics, normalise) and the
//! backward pass twice (two sums, dx).
//!
//! Training:  y = γ · (x − μ_B) / √(σ²_B + ε) + β, with batch statistics over
//! (N, H, W); running_mean ← (1 − m)·running_mean + m·μ_B and
//! running_var ← (1 − m)·running_var + m·σ²_B·n/(n − 1), as PyTorch.
//! Evaluation: the same with the running statistics.
//! Backward (x̂ = (x − μ)/σ, n values per channel):
//!   dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ/σ · (dy − dβ/n − x̂·dγ/n).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

use crate::affine::{channel_affine, Activation};

/// Per-channel batch mean and 1/√(var + ε) of the last forward pass, shared
/// between the op (for its backward pass) and the layer (for the running
/// statistics).
#[derive(Default)]
struct Stats {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    /// Biased batch variance (what normalises), for the running estimate.
    var: Vec<f32>,
}

struct BnTrain {
    eps: f64,
    /// max(0, ·) applied to the output (the ReLU after most batch norms),
    /// its mask taken from the output in the backward pass.
    relu: bool,
    stats: Arc<Mutex<Stats>>,
}

/// (batch, channels, values per channel and sample) of an input of rank >= 2.
fn geometry(shape: &Shape) -> Result<(usize, usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm: input must have at least two dimensions, got {shape:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    crate::cpu::f32_values(s, l, &format!("batch norm: {what}"))
}

/// Σ over the batch of f(plane of sample b, channel c), for each channel.
fn per_channel<F: Fn(usize, usize) -> (f64, f64) + Sync>(c: usize, n: usize, f: F) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ci| {
            let mut acc = (0f64, 0f64);
            for b in 0..n {
                let (s0, s1) = f(b, ci);
                acc.0 += s0;
                acc.1 += s1;
            }
            acc
        })
        .collect()
}

impl CustomOp3 for BnTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, l) = geometry(l1.shape())?;
        let (x, gamma, beta) = (slice(s1, l1, "input")?, slice(s2, l2, "weight")?, slice(s3, l3, "bias")?);
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!("batch norm: {c} channels but weight/bias of {}/{}", gamma.len(), beta.len());
        }
        let count = (n * l) as f64;
        let plane = |b: usize, ci: usize| &x[(b * c + ci) * l..(b * c + ci + 1) * l];
        // Two passes (mean, then squared deviations): stable where Σx² − nμ² is not.
        let sums = per_channel(c, n, |b, ci| (plane(b, ci).iter().map(|&v| v as f64).sum(), 0.0));
        let mean: Vec<f32> = sums.iter().map(|s| (s.0 / count) as f32).collect();
        let dev = per_channel(c, n, |b, ci| {
            let m = mean[ci];
            (plane(b, ci).iter().map(|&v| ((v - m) * (v - m)) as f64).sum(), 0.0)
        });
        let var: Vec<f32> = dev.iter().map(|s| (s.0 / count) as f32).collect();
        let inv_std: Vec<f32> = var.iter().map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32).collect();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(l.max(1)).enumerate().for_each(|(p, out)| {
            let ci = p % c;
            let scale = gamma[ci] * inv_std[ci];
            let shift = beta[ci] - mean[ci] * scale;
            let x = &x[p * l..(p + 1) * l];
            if self.relu {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (v * scale + shift).max(0.0);
                }
            } else {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v * scale + shift;
                }
            }
        });
        *self.stats.lock().unwrap() = Stats { mean, inv_std, var };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, gamma: &Tensor, _beta: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, l) = geometry(x.shape())?;
        let stats = self.stats.lock().unwrap();
        let (mean, inv_std) = (&stats.mean, &stats.inv_std);
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let (ys, yl) = y.storage_and_layout();
        let (Storage::Cpu(gs), Storage::Cpu(xs), Storage::Cpu(ys)) = (&*gs, &*xs, &*ys) else { candle_core::bail!("batch norm: CPU tensors expected") };
        let (dy_in, xv, yv) = (slice(gs, gl, "gradient")?, slice(xs, xl, "input")?, slice(ys, yl, "output")?);
        // Through the fused ReLU: no gradient where the output was clamped.
        let masked: Vec<f32>;
        let dy: &[f32] = if self.relu {
            masked = dy_in.par_iter().zip(yv.par_iter()).map(|(&g, &o)| if o > 0.0 { g } else { 0.0 }).collect();
            &masked
        } else {
            dy_in
        };
        let gamma_v: Vec<f32> = gamma.to_vec1()?;
        let sums = per_channel(c, n, |b, ci| {
            let r = (b * c + ci) * l..(b * c + ci + 1) * l;
            let (m, is) = (mean[ci], inv_std[ci]);
            dy[r.clone()].iter().zip(&xv[r]).fold((0f64, 0f64), |acc, (&g, &v)| (acc.0 + g as f64, acc.1 + (g * (v - m) * is) as f64))
        });
        let count = (n * l) as f32;
        let dbeta: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        let dgamma: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        let gx = if x.track_op() {
            let mut dx = vec![0f32; xv.len()];
            dx.par_chunks_mut(l.max(1)).enumerate().for_each(|(p, out)| {
                let ci = p % c;
                let (m, is) = (mean[ci], inv_std[ci]);
                let k = gamma_v[ci] * is;
                let (db, dg) = (dbeta[ci] / count, dgamma[ci] / count);
                let r = p * l..(p + 1) * l;
                for ((o, &g), &v) in out.iter_mut().zip(&dy[r.clone()]).zip(&xv[r]) {
                    *o = k * (g - db - (v - m) * is * dg);
                }
            });
            Some(Tensor::from_vec(dx, x.shape(), x.device())?)
        } else {
            None
        };
        let dev = x.device();
        Ok((gx, Some(Tensor::from_vec(dgamma, c, dev)?), Some(Tensor::from_vec(dbeta, c, dev)?)))
    }
}

/// A batch-norm layer over dimension 1 of its input (any rank >= 2), with
/// candle-nn's tensor names (`weight`, `bias`, `running_mean`,
/// `running_var`) and initial values, so checkpoints are unchanged.
#[derive(Clone)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    pub fn new(channels: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.))?;
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.))?;
        // from_tensor shares the storage of a variable: updates reach the store.
        Ok(Self { weight, bias, running_mean: Var::from_tensor(&running_mean)?, running_var: Var::from_tensor(&running_var)?, eps, momentum })
    }

    /// PyTorch's default momentum of the running statistics.
    pub const TORCH_MOMENTUM: f64 = 0.1;

    /// PyTorch's `BatchNorm2d` defaults: eps 1e-5, momentum 0.1.
    pub fn torch_default(channels: usize, vb: VarBuilder) -> Result<Self> {
        Self::new(channels, 1e-5, Self::TORCH_MOMENTUM, vb)
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    fn channel_shape(&self, x: &Tensor) -> Vec<usize> {
        (0..x.rank()).map(|i| if i == 1 { x.dims()[1] } else { 1 }).collect()
    }

    /// Normalisation with batch statistics, updating the running ones.
    pub fn forward_train(&self, x: &Tensor) -> Result<Tensor> {
        self.train_pass(x, false)
    }

    /// `relu(batch_norm(x))`, in training or evaluation mode: in training
    /// the ReLU is part of the fused op (one pass less each way).
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.train_pass(x, true)
        } else {
            self.eval_pass(x, true)
        }
    }

    fn train_pass(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (n, c, l) = geometry(x.shape())?;
        if n * l < 2 {
            candle_core::bail!("batch norm: training needs more than one value per channel, got input {:?}", x.shape());
        }
        let (y, mean, var) = if crate::device::cpu_kernels_apply(&[x]) {
            let stats = Arc::new(Mutex::new(Stats::default()));
            let op = BnTrain { eps: self.eps, relu, stats: stats.clone() };
            let y = x.contiguous()?.apply_op3(&self.weight.contiguous()?, &self.bias.contiguous()?, op)?;
            let s = stats.lock().unwrap();
            (y, Tensor::from_slice(&s.mean, c, x.device())?, Tensor::from_slice(&s.var, c, x.device())?)
        } else {
            let (y, mean, var) = self.forward_train_composed(x)?;
            (if relu { y.relu()? } else { y }, mean, var)
        };
        let unbias = (n * l) as f64 / (n * l - 1) as f64;
        let m = self.momentum;
        self.running_mean.set(&((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?)?;
        self.running_var.set(&((self.running_var.as_tensor() * (1.0 - m))? + (var * (m * unbias))?)?)?;
        Ok(y)
    }

    /// The same normalisation from candle's tensor ops: the path on other
    /// devices and dtypes, and the reference the fused op is tested against.
    /// Returns (y, batch mean, biased batch variance).
    pub fn forward_train_composed(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let c = x.dim(1)?;
        let shape = self.channel_shape(x);
        let flat = x.transpose(0, 1)?.flatten_from(1)?; // (C, everything else)
        let mean = flat.mean_keepdim(1)?;
        let centred = flat.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(1)?;
        let mean_b = mean.reshape(shape.as_slice())?;
        let inv_std_b = (var.clone() + self.eps)?.sqrt()?.recip()?.reshape(shape.as_slice())?;
        let y = x
            .broadcast_sub(&mean_b)?
            .broadcast_mul(&inv_std_b)?
            .broadcast_mul(&self.weight.reshape(shape.as_slice())?)?
            .broadcast_add(&self.bias.reshape(shape.as_slice())?)?;
        Ok((y, mean.reshape(c)?.detach(), var.reshape(c)?.detach()))
    }

    /// Normalisation with the running statistics, as one scale and shift.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.eval_pass(x, false)
    }

    /// Per-channel y = x·a + b (then the optional ReLU): one pass on the CPU
    /// in f32, with the input gradient (saliency maps differentiate frozen
    /// networks in evaluation mode); no gradient reaches γ and β in this
    /// mode, which nothing trains.
    fn eval_pass(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let (scale, shift) = self.eval_coefficients()?;
        let act = if relu { Activation::Relu } else { Activation::Identity };
        channel_affine(x, Some(&scale), &shift, None, act)
    }

    /// The evaluation-mode map as per-channel (scale, shift):
    /// γ/√(running_var + ε) and β − running_mean · scale.
    pub fn eval_coefficients(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let scale = (self.weight.detach() / (self.running_var.as_tensor().detach() + self.eps)?.sqrt()?)?;
        let shift = (self.bias.detach() - (self.running_mean.as_tensor().detach() * &scale)?)?;
        Ok((scale.to_dtype(DType::F64)?.to_vec1()?, shift.to_dtype(DType::F64)?.to_vec1()?))
    }
}

impl candle_core::ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }
}

/// Precise batch-norm statistics (Wu & Johnson 2021, "Rethinking 'Batch' in
/// BatchNorm"): replaces every running mean and variance in `store` by the
/// average of its per-batch statistics over `batches`, the weights fixed.
/// `forward_train` runs the network in training mode on one batch.
///
/// Why: the exponential running average trails the weights. With Adam
/// moving a small network's weights fast, the statistics it ends an epoch
/// with can be far from what the final weights produce, and inference mode
/// then computes another function than the one trained (measured on
/// Multi-AD, `docs/multiad.md`, "Batch-norm statistics").
///
/// Every batch norm in `store` must use [`BatchNorm::TORCH_MOMENTUM`] (all
/// of this project's do): each batch's statistic is read back as the
/// running value it leaves from zero, divided by the momentum. Returns the
/// number of batches averaged.
pub fn recompute_running_statistics<I, F>(store: &crate::ParamStore, batches: I, mut forward_train: F) -> Result<usize>
where
    I: IntoIterator<Item = Result<Tensor>>,
    F: FnMut(&Tensor) -> Result<()>,
{
    let stats = store.running_statistics();
    let mut sums: Vec<Tensor> = stats.iter().map(|(_, v)| v.as_tensor().zeros_like()).collect::<Result<_>>()?;
    let mut count = 0usize;
    for batch in batches {
        let x = batch?;
        for (_, v) in &stats {
            v.set(&v.as_tensor().zeros_like()?)?;
        }
        forward_train(&x)?;
        for ((_, v), sum) in stats.iter().zip(sums.iter_mut()) {
            *sum = (&*sum + (v.as_tensor() / BatchNorm::TORCH_MOMENTUM)?)?;
        }
        count += 1;
    }
    if count == 0 {
        candle_core::bail!("batch norm: no batch to recompute the running statistics from");
    }
    for ((_, v), sum) in stats.iter().zip(sums) {
        v.set(&(sum / count as f64)?)?;
    }
    Ok(count)
}

//! Adam (Kingma & Ba) with optional decoupled weight decay, whose state can be
//! saved in a checkpoint and restored, so that a resumed run continues exactly.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled (AdamW) weight decay; 0 for the paper's plain Adam.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's `torch.optim.Adam` defaults.
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

pub struct Adam {
    cfg: AdamConfig,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
}

impl Adam {
    pub fn new(vars: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        let m = vars.iter().map(|(_, v)| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = vars.iter().map(|(_, v)| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        Ok(Self { cfg, vars, m, v, step: 0 })
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    pub fn config(&self) -> AdamConfig {
        self.cfg
    }

    /// One update from `grads`; variables without a gradient are left alone.
    /// A non-finite gradient is an error and nothing is updated, so that a
    /// diverging run never writes NaN into its weights.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        crate::optimiser::check_finite(&self.vars, grads)?;
        self.step += 1;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(self.step as i32);
        let bc2 = 1.0 - c.beta2.powi(self.step as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            // Detached: a gradient that came through a tracked op (a
            // spectrally normalised weight's does) carries the step's whole
            // graph, and moments kept with it chained every step's graph to
            // the next (RSS grew by the activations of each step).
            let Some(g) = grads.get(var.as_tensor()).map(Tensor::detach) else { continue };
            let m = ((&self.m[i] * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + c.eps)?)?;
            let mut next = (var.as_tensor() - (update * c.lr)?)?;
            if c.weight_decay > 0.0 {
                next = (next - (var.as_tensor() * (c.lr * c.weight_decay))?)?;
            }
            var.set(&next.detach())?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments and the step count, named `{prefix}m.{var}`, `{prefix}v.{var}`, `{prefix}step`.
    pub fn state(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{prefix}m.{name}"), self.m[i].clone());
            out.insert(format!("{prefix}v.{name}"), self.v[i].clone());
        }
        let dev = self.vars.first().map(|(_, v)| v.device().clone()).unwrap_or(candle_core::Device::Cpu);
        out.insert(format!("{prefix}step"), Tensor::new(&[self.step as f64], &dev)?);
        Ok(out)
    }

    /// Restores what [`Adam::state`] saved; a missing tensor is an error naming it.
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        let get = |k: String| -> Result<Tensor> { t.get(&k).cloned().ok_or_else(|| candle_core::Error::Msg(format!("optimiser state `{k}` is missing"))) };
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let m = get(format!("{prefix}m.{name}"))?;
            let v = get(format!("{prefix}v.{name}"))?;
            if m.dims() != var.dims() || v.dims() != var.dims() {
                candle_core::bail!("optimiser state for `{name}` has the wrong shape");
            }
            // Checkpoints are read to the CPU; the moments live where their variable does.
            self.m[i] = m.to_device(var.device())?;
            self.v[i] = v.to_device(var.device())?;
        }
        self.step = get(format!("{prefix}step"))?.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A gradient that comes out of tracked ops (here p·Σp, as a spectrally
    /// normalised weight's does) must not leave its graph in the moments:
    /// kept there, every step's graph chained to the next and training
    /// memory grew by a step's activations per step (12 GB at the `cpu`
    /// scale with `discriminator.spectral_norm`).
    #[test]
    fn moments_hold_no_graph() {
        let p = Var::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("p".into(), p.clone())], AdamConfig::default()).unwrap();
        for _ in 0..3 {
            let loss = p.as_tensor().broadcast_mul(&p.as_tensor().sum_all().unwrap()).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&grads).unwrap();
        }
        for (name, t) in opt.state("").unwrap() {
            assert!(!t.track_op(), "Adam state `{name}` keeps a graph");
        }
    }
}

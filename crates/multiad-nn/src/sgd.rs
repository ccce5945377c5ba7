//! SGD with momentum and L2 weight decay, as `torch.optim.SGD` computes it
//! (candle-nn's SGD has neither): g ← g + wd·p; b ← μ·b + g (b = g on the
//! first step); p ← p − lr·b. Its momentum buffers can be checkpointed.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

pub struct Sgd {
    cfg: SgdConfig,
    vars: Vec<(String, Var)>,
    buf: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(vars: Vec<(String, Var)>, cfg: SgdConfig) -> Self {
        let buf = vec![None; vars.len()];
        Self { cfg, vars, buf }
    }

    /// One update; variables without a gradient are left alone. A
    /// non-finite gradient is an error and nothing is updated.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        crate::optimiser::check_finite(&self.vars, grads)?;
        let c = self.cfg;
        for (i, (_, var)) in self.vars.iter().enumerate() {
            // Detached, so that the momentum buffer never keeps a
            // gradient's graph alive from one step to the next (see Adam).
            let Some(g) = grads.get(var.as_tensor()).map(Tensor::detach) else { continue };
            let mut d = if c.weight_decay != 0.0 { (g + (var.as_tensor() * c.weight_decay)?)? } else { g.clone() };
            if c.momentum != 0.0 {
                let b = match &self.buf[i] {
                    Some(b) => ((b * c.momentum)? + &d)?,
                    None => d.clone(),
                };
                d = b.clone();
                self.buf[i] = Some(b);
            }
            var.set(&(var.as_tensor() - (d * c.lr)?)?.detach())?;
        }
        Ok(())
    }

    /// Momentum buffers, named `{prefix}buf.{var}` (absent before the first step).
    pub fn state(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.vars.iter().zip(&self.buf).filter_map(|((name, _), b)| b.as_ref().map(|b| (format!("{prefix}buf.{name}"), b.clone()))).collect()
    }

    /// Restores what [`Sgd::state`] saved; a mis-shaped buffer is an error naming it.
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            if let Some(b) = t.get(&format!("{prefix}buf.{name}")) {
                if b.dims() != var.dims() {
                    candle_core::bail!("optimiser state for `{name}` has the wrong shape");
                }
                // Checkpoints are read to the CPU; the buffer lives where its variable does.
                self.buf[i] = Some(b.to_device(var.device())?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_pytorch_sgd_by_hand() {
        // p = 1, loss = p² (g = 2p), lr 0.1, momentum 0.9, wd 0.01:
        // step 1: d = 2 + 0.01 = 2.01, b = 2.01, p = 1 - 0.201 = 0.799
        // step 2: d = 1.598 + 0.00799 = 1.60599, b = 0.9·2.01 + 1.60599 = 3.41499, p = 0.799 - 0.341499 = 0.457501
        let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![("p".into(), p.clone())], SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.01 });
        for expect in [0.799f32, 0.457501] {
            let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            let v = p.as_tensor().to_vec1::<f32>().unwrap()[0];
            assert!((v - expect).abs() < 1e-6, "{v} vs {expect}");
        }
        // The buffer survives a save/load round trip.
        let st = opt.state("o.");
        let q = Var::new(&[0.457501f32], &Device::Cpu).unwrap();
        let mut again = Sgd::new(vec![("p".into(), q)], opt.cfg);
        again.load_state(&st, "o.").unwrap();
        assert_eq!(again.buf[0].as_ref().unwrap().to_vec1::<f32>().unwrap(), opt.buf[0].as_ref().unwrap().to_vec1::<f32>().unwrap());
    }

    /// As for Adam: the momentum buffer keeps no gradient's graph.
    #[test]
    fn momentum_holds_no_graph() {
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Sgd::new(vec![("p".into(), p.clone())], SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.0 });
        for _ in 0..2 {
            let loss = p.as_tensor().broadcast_mul(&p.as_tensor().sum_all().unwrap()).unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        for (name, t) in opt.state("") {
            assert!(!t.track_op(), "SGD state `{name}` keeps a graph");
        }
    }
}

//! What every training loop needs of an optimiser ([`Adam`], [`Sgd`]): a
//! step on a gradient store, and state a checkpoint keeps.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

use crate::{Adam, Sgd};

pub trait Optimiser {
    /// One update from `grads`; see each optimiser's own `step`.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// The state a resumed run needs, every name beginning with `prefix`.
    fn state(&self, prefix: &str) -> Result<HashMap<String, Tensor>>;
    /// Restores what [`Optimiser::state`] saved under `prefix`.
    fn load_state(&mut self, t: &HashMap<String, Tensor>, prefix: &str) -> Result<()>;
}

impl Optimiser for Adam {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        Adam::step(self, grads)
    }
    fn state(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        Adam::state(self, prefix)
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        Adam::load_state(self, t, prefix)
    }
}

impl Optimiser for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        Sgd::step(self, grads)
    }
    fn state(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        Ok(Sgd::state(self, prefix))
    }
    fn load_state(&mut self, t: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        Sgd::load_state(self, t, prefix)
    }
}

/// Refuses a step whose gradient is NaN or infinite anywhere, naming the
/// variable, before anything is updated: a diverging run never writes NaN
/// into its weights.
pub(crate) fn check_finite(vars: &[(String, Var)], grads: &GradStore) -> Result<()> {
    for (name, var) in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            let s = g.abs()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            if !s.is_finite() {
                candle_core::bail!("non-finite gradient for `{name}`");
            }
        }
    }
    Ok(())
}

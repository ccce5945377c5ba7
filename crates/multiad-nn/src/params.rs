//! Parameters created in a fixed order from a seeded generator, so that the
//! same seed gives the same initial network on any machine; saved to and
//! loaded from safetensors by name.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Named variables. Cheap to clone (shared).
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Inner>,
}

struct Inner {
    vars: Mutex<BTreeMap<String, Var>>,
    rng: Mutex<ChaCha8Rng>,
}

/// A batch-norm layer's running mean or variance.
fn is_running_statistic(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Batch-norm running statistics and counters, and spectral normalisation's
/// power-iteration vectors, are state, not trainable parameters.
fn is_buffer(name: &str) -> bool {
    is_running_statistic(name) || name.ends_with("num_batches_tracked") || name.ends_with("sn_u")
}

impl ParamStore {
    pub fn new(seed: u64) -> Self {
        Self { inner: Arc::new(Inner { vars: Mutex::new(BTreeMap::new()), rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)) }) }
    }

    /// A candle-nn `VarBuilder` whose variables live in this store, in f32
    /// (f64 inside [`crate::device::with_float64`]).
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), crate::device::parameter_dtype(), device.clone())
    }

    /// Trainable variables (not batch-norm statistics), sorted by name.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        let vars = self.inner.vars.lock().unwrap();
        vars.iter().filter(|(k, _)| !is_buffer(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Batch-norm running means and variances, sorted by name.
    pub fn running_statistics(&self) -> Vec<(String, Var)> {
        let vars = self.inner.vars.lock().unwrap();
        vars.iter().filter(|(k, _)| is_running_statistic(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Every tensor (parameters and statistics) by name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let vars = self.inner.vars.lock().unwrap();
        vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.inner.vars.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> usize {
        self.trainable().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Overwrites every variable from `tensors` (as read from safetensors,
    /// names prefixed by `prefix`). A missing or mis-shaped tensor is an error
    /// that names it; extra tensors are ignored.
    pub fn load_from(&self, tensors: &HashMap<String, Tensor>, prefix: &str, source: &Path) -> Result<()> {
        let vars = self.inner.vars.lock().unwrap();
        for (name, var) in vars.iter() {
            let key = format!("{prefix}{name}");
            let Some(t) = tensors.get(&key) else {
                candle_core::bail!("{}: tensor `{key}` is missing", source.display());
            };
            if t.dims() != var.dims() {
                candle_core::bail!("{}: tensor `{key}` has shape {:?}, expected {:?}", source.display(), t.dims(), var.dims());
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }

    fn sample(&self, shape: &Shape, init: Init) -> Vec<f32> {
        let n = shape.elem_count();
        let mut rng = self.inner.rng.lock().unwrap();
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f32> {
            let d = Normal::new(mean, std.max(1e-12)).unwrap();
            (0..n).map(|_| d.sample(rng) as f32).collect()
        };
        match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                    candle_nn::init::NormalOrUniform::Uniform => {
                        let b = 3f64.sqrt() * std;
                        (0..n).map(|_| rng.random_range(-b..b) as f32).collect()
                    }
                }
            }
        }
    }
}

impl SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(v) = self.inner.vars.lock().unwrap().get(name) {
            if v.shape() != &s {
                candle_core::bail!("parameter `{name}` requested with shape {s:?} but has {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let data = self.sample(&s, h);
        let var = Var::from_tensor(&Tensor::from_vec(data, s, dev)?.to_dtype(dtype)?)?;
        self.inner.vars.lock().unwrap().insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        match self.inner.vars.lock().unwrap().get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("parameter `{name}` does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.vars.lock().unwrap().contains_key(name)
    }
}

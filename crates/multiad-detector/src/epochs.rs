//! The epoch loop every method that trains goes through (Multi-AD, STFPM,
//! RD4AD, SimpleNet, MKD): shuffled batches fixed by seed and epoch, a
//! progress line, a checkpoint and a history line (and TensorBoard events)
//! after every epoch, `--resume` from the checkpoint, and a clear stop on a
//! non-finite loss with the last checkpoint intact. A method supplies one
//! step ([`EpochModel`]); [`LossTrainer`] is that step for the usual case of
//! one loss, one parameter store and one optimiser.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad_data::{Batch, BatchLoader, ImageConfig, Sample};
use multiad_nn::{Optimiser, ParamStore};

use crate::history::{append_history, EpochLog};
use crate::{checkpoint, DetectorSpec, FitOptions, FitOutcome, RunDir};

/// What the loop needs from a method.
pub trait EpochModel {
    /// Called before an epoch's first batch: the epoch (0-based) and how
    /// many batches it has. Methods whose step depends on where it is in the
    /// run (Multi-AD's flips and schedules) keep it.
    fn begin_epoch(&mut self, _epoch: usize, _batches: usize) {}
    /// One optimisation step on a batch; the losses before the update. A
    /// non-finite loss, or a [`NonFinite`] error, stops training.
    fn step(&mut self, batch: &Batch) -> Result<StepLosses>;
    /// Everything a resumed run needs: weights and optimiser state.
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores what [`EpochModel::state`] returned; `path` for errors.
    fn restore(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()>;
}

/// The losses of one step, named as in history.jsonl. A method with one
/// loss reports it as both `g` and `s` (`From<f64>`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLosses {
    /// The distillation (or only) loss; Multi-AD's L_G (Eq 8).
    pub g: f64,
    /// The discriminator's own loss, when it stepped (Multi-AD's L_D, Eq 10).
    pub d: Option<f64>,
    /// The adversarial term, when there is one (Multi-AD's L_adv, Eq 11).
    pub adv: Option<f64>,
    /// What the step minimised; Multi-AD's L_G + λ·L_adv (Eq 12).
    pub s: f64,
}

impl From<f64> for StepLosses {
    fn from(loss: f64) -> Self {
        Self { g: loss, d: None, adv: None, s: loss }
    }
}

/// A loss or gradient that became NaN or infinite in a step: the loop turns
/// it into the message that says what to lower.
#[derive(Debug)]
pub struct NonFinite {
    /// Which loss (`student`, `discriminator`, or the method's name).
    pub which: String,
    /// The optimiser's own message, when it found a gradient non-finite.
    pub detail: Option<String>,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} loss or its gradient became non-finite", self.which)
    }
}

impl std::error::Error for NonFinite {}

/// The loop's settings.
pub struct EpochPlan<'a> {
    /// For messages (`STFPM`, `Multi-AD`).
    pub name: &'a str,
    pub image: ImageConfig,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// Where the model's tensors live: batches go there.
    pub device: Device,
    /// The config keys to lower when the loss diverges (`` `lr` ``).
    pub lower_on_divergence: &'a str,
}

impl<'a> EpochPlan<'a> {
    /// The plan for a detector of this `spec` (its images and device):
    /// `name` for messages, and the config keys to lower on divergence.
    pub fn new(name: &'a str, spec: &DetectorSpec, batch_size: usize, epochs: usize, seed: u64, lower_on_divergence: &'a str) -> Self {
        Self { name, image: spec.image, batch_size, epochs, seed, device: spec.device.clone(), lower_on_divergence }
    }
}

/// `1m05s`, `2h03m`: the progress line's ETA.
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// Sums of an epoch's step losses, for its history line and progress.
#[derive(Default)]
struct EpochSums {
    g: f64,
    s: f64,
    adv: Option<f64>,
    d: f64,
    d_steps: usize,
    steps: usize,
}

impl EpochSums {
    fn add(&mut self, l: &StepLosses) {
        self.g += l.g;
        self.s += l.s;
        if let Some(a) = l.adv {
            *self.adv.get_or_insert(0.0) += a;
        }
        if let Some(d) = l.d {
            self.d += d;
            self.d_steps += 1;
        }
        self.steps += 1;
    }

    fn mean(&self, v: f64) -> f64 {
        v / self.steps.max(1) as f64
    }

    /// L_D averages the steps on which the discriminator stepped.
    fn mean_d(&self) -> Option<f64> {
        (self.d_steps > 0).then(|| self.d / self.d_steps as f64)
    }

    fn progress(&self) -> String {
        let mut p = format!("loss {:.4}", self.mean(self.g));
        if let Some(d) = self.mean_d() {
            p += &format!(" L_D {d:.4}");
        }
        if let Some(a) = self.adv {
            p += &format!(" L_adv {:.4}", self.mean(a));
        }
        p
    }

    fn log(&self, epoch: usize, seconds: f64) -> EpochLog {
        EpochLog { epoch, loss_g: self.mean(self.g), loss_adv: self.adv.map(|a| self.mean(a)), loss_d: self.mean_d(), loss_s: self.mean(self.s), seconds }
    }
}

/// The TensorBoard scalars of one step: `loss` (what was minimised), and
/// its terms where it has several.
fn step_scalars(l: &StepLosses) -> Vec<(&'static str, f64)> {
    let mut v = vec![("loss", l.s)];
    if let Some(a) = l.adv {
        v.extend([("loss_g", l.g), ("loss_adv", a)]);
    }
    if let Some(d) = l.d {
        v.push(("loss_d", d));
    }
    v
}

pub fn train_epochs(model: &mut dyn EpochModel, plan: &EpochPlan, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
    let mut start = 0;
    if opts.resume {
        match checkpoint::load_with(run, &Device::Cpu, log, |t, path| model.restore(t, path))? {
            Some(((), done)) => {
                start = done;
                writeln!(log, "resuming {} after epoch {start}", run.dir.display())?;
            }
            None => writeln!(log, "no checkpoint in {}; starting from epoch 1", run.dir.display())?,
        }
    }
    let n = train.len();
    let bs = plan.batch_size.min(n);
    if bs < 2 {
        bail!("{} needs at least 2 normal training images, found {n}", plan.name);
    }
    let t_all = Instant::now();
    let mut events = crate::events::RunEvents::open(run, "train");
    let steps_per_epoch = (n / bs) as i64; // drop_last
    events.start(start as i64 * steps_per_epoch + 1);
    for epoch in start..plan.epochs {
        let t0 = Instant::now();
        // The order depends on seed and epoch only: a resumed run sees the
        // batches an uninterrupted one would.
        let loader = BatchLoader::new(train.to_vec(), plan.image, bs)
            .shuffled(plan.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64))
            .drop_last(true)
            .on_device(&plan.device);
        let nb = loader.num_batches();
        model.begin_epoch(epoch, nb);
        let mut sums = EpochSums::default();
        for (k, b) in loader.iter().enumerate() {
            let losses = match model.step(&b?) {
                Ok(l) if l.s.is_finite() => l,
                Ok(_) => bail!("{}", divergence(plan, run, plan.name, epoch, k)),
                Err(e) => match e.downcast_ref::<NonFinite>() {
                    Some(nf) => bail!("{}{}", nf.detail.as_deref().map(|d| format!("{d}: ")).unwrap_or_default(), divergence(plan, run, &nf.which, epoch, k)),
                    None => return Err(crate::evaluate::out_of_memory(e, bs)),
                },
            };
            sums.add(&losses);
            events.step(epoch as i64 * nb as i64 + k as i64 + 1, &step_scalars(&losses));
            let done = (epoch - start) * nb + k + 1;
            let eta = t_all.elapsed().as_secs_f64() / done as f64 * ((plan.epochs - start) * nb - done) as f64;
            write!(log, "\repoch {}/{} [{}/{nb}] {} ETA {}   ", epoch + 1, plan.epochs, k + 1, sums.progress(), fmt_secs(eta))?;
            log.flush()?;
        }
        checkpoint::save(run, model.state()?, epoch + 1)?;
        let e = sums.log(epoch + 1, t0.elapsed().as_secs_f64());
        append_history(run, &e)?;
        events.epoch(&e);
        writeln!(log)?;
        if opts.stop_after_epochs == Some(epoch + 1) {
            return Ok(FitOutcome::Stopped);
        }
    }
    Ok(FitOutcome::Finished)
}

/// What a user reads when training diverges: where, what is kept, what to lower.
fn divergence(plan: &EpochPlan, run: &RunDir, which: &str, epoch: usize, batch: usize) -> String {
    let kept = if run.path(checkpoint::FILE).is_file() {
        format!("the last good checkpoint ({}) is intact", run.path(checkpoint::FILE).display())
    } else {
        "no checkpoint had been written yet".into()
    };
    format!(
        "the {which} loss or its gradient became non-finite (NaN or infinite) in epoch {}, batch {}; training stopped and {kept}. Lower {} in {} and pass --resume",
        epoch + 1,
        batch + 1,
        plan.lower_on_divergence,
        run.path("config.yaml").display()
    )
}

/// The trainer of a method with one loss, one parameter store and one
/// optimiser (STFPM, RD4AD, MKD): `loss` computes a batch's loss (with the
/// frozen network's features from the cache), the step minimises it, and
/// checkpoints hold the store under `prefix` and the optimiser under `opt.`.
pub struct LossTrainer<'a, O, F> {
    params: &'a ParamStore,
    prefix: &'a str,
    opt: O,
    cache: FeatureCache,
    loss: F,
}

impl<'a, O: Optimiser, F: FnMut(&Batch, &mut FeatureCache) -> Result<Tensor>> LossTrainer<'a, O, F> {
    pub fn new(params: &'a ParamStore, prefix: &'a str, opt: O, cache_mib: usize, loss: F) -> Self {
        Self { params, prefix, opt, cache: FeatureCache::new(cache_mib), loss }
    }
}

impl<O: Optimiser, F: FnMut(&Batch, &mut FeatureCache) -> Result<Tensor>> EpochModel for LossTrainer<'_, O, F> {
    fn step(&mut self, b: &Batch) -> Result<StepLosses> {
        let l = (self.loss)(b, &mut self.cache)?;
        let v = l.to_scalar::<f32>()? as f64;
        if v.is_finite() {
            self.opt.step(&l.backward()?)?;
        }
        Ok(v.into())
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut t = prefixed(self.params, self.prefix);
        t.extend(self.opt.state("opt.")?);
        Ok(t)
    }

    fn restore(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        self.params.load_from(t, self.prefix, path)?;
        self.opt.load_state(t, "opt.").with_context(|| format!("{}", path.display()))
    }
}

/// A store's tensors with `prefix` before each name (how a model file or a
/// checkpoint keeps several stores apart).
pub fn prefixed(params: &ParamStore, prefix: &str) -> HashMap<String, Tensor> {
    params.tensors().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
}

/// Frozen-network features of training images, computed once per image
/// (no augmentation, so they never change) up to a memory budget.
pub struct FeatureCache {
    map: HashMap<usize, Vec<Tensor>>,
    bytes: usize,
    budget: usize,
}

impl FeatureCache {
    pub fn new(budget_mib: usize) -> Self {
        Self { map: HashMap::new(), bytes: 0, budget: budget_mib << 20 }
    }

    /// The features of the images `indices` (batch order), from the cache
    /// when every one is in it; otherwise `compute(images)`, and each image's
    /// rows are kept while the budget allows.
    pub fn get(
        &mut self,
        images: &Tensor,
        indices: &[usize],
        compute: impl FnOnce(&Tensor) -> candle_core::Result<Vec<Tensor>>,
    ) -> candle_core::Result<Vec<Tensor>> {
        if !indices.is_empty() && indices.iter().all(|i| self.map.contains_key(i)) {
            let per: Vec<&Vec<Tensor>> = indices.iter().map(|i| &self.map[i]).collect();
            return (0..per[0].len()).map(|l| Tensor::cat(&per.iter().map(|p| &p[l]).collect::<Vec<_>>(), 0)).collect();
        }
        let feats = compute(images)?;
        for (j, &i) in indices.iter().enumerate() {
            // force_contiguous, not copy(): candle's copy() clones the whole
            // storage behind a view, so every cached row would keep the
            // entire batch alive (16x the memory at batch 16).
            let one: Vec<Tensor> = feats.iter().map(|f| f.narrow(0, j, 1)?.force_contiguous()).collect::<candle_core::Result<_>>()?;
            let size: usize = one.iter().map(|t| t.elem_count() * t.dtype().size_in_bytes()).sum();
            if self.bytes + size <= self.budget {
                self.bytes += size;
                self.map.insert(i, one);
            }
        }
        Ok(feats)
    }

    /// Bytes the cached tensors' storages hold (what the budget limits).
    pub fn resident_bytes(&self) -> usize {
        self.map
            .values()
            .flatten()
            .map(|t| {
                let (storage, _) = t.storage_and_layout();
                match &*storage {
                    candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v.len() * 4,
                    _ => t.elem_count() * t.dtype().size_in_bytes(),
                }
            })
            .sum()
    }

    /// Images cached so far.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

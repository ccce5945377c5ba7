//! The epoch loop shared by methods that train (STFPM, RD4AD): shuffled
//! batches fixed by seed and epoch, a progress line, a checkpoint and a
//! history line (and TensorBoard events) after every epoch, `--resume` from the checkpoint, and a
//! clear stop on a non-finite loss with the last checkpoint intact.
//! Multi-AD keeps its own loop (two optimisers, a discriminator).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use multiad_data::{Batch, BatchLoader, ImageConfig, Sample};

use crate::history::{append_history, EpochLog};
use crate::{checkpoint, FitOptions, FitOutcome, RunDir};

/// What the loop needs from a method.
pub trait EpochModel {
    /// One optimisation step on a batch; the loss before the update.
    fn step(&mut self, batch: &Batch) -> Result<f64>;
    /// Everything a resumed run needs: weights and optimiser state.
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores what [`EpochModel::state`] returned; `path` for errors.
    fn restore(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()>;
}

/// The loop's settings.
pub struct EpochPlan<'a> {
    /// For messages (`STFPM`, `RD4AD`).
    pub name: &'a str,
    pub image: ImageConfig,
    pub batch_size: usize,
    pub epochs: usize,
    pub seed: u64,
    /// The config key to lower when the loss diverges (`lr`).
    pub lr_key: &'a str,
}

pub fn train_epochs(model: &mut dyn EpochModel, plan: &EpochPlan, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
    let mut start = 0;
    if opts.resume {
        if let Some(((), done)) = checkpoint::load_with(run, &Device::Cpu, log, |t, path| model.restore(t, path))? {
            start = done;
            writeln!(log, "resuming {} after epoch {start}", run.dir.display())?;
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
        let loader = BatchLoader::new(train.to_vec(), plan.image, bs).shuffled(plan.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)).drop_last(true);
        let nb = loader.num_batches();
        let mut sum = 0.0;
        for (k, b) in loader.iter().enumerate() {
            let loss = model.step(&b?)?;
            if !loss.is_finite() {
                let kept = if epoch > 0 {
                    format!("the checkpoint after epoch {epoch} ({}) is intact", run.path(checkpoint::FILE).display())
                } else {
                    "no checkpoint had been written yet".into()
                };
                bail!(
                    "the {} loss became non-finite in epoch {}, batch {}; training stopped and {kept}. Lower `{}` in {} and pass --resume",
                    plan.name,
                    epoch + 1,
                    k + 1,
                    plan.lr_key,
                    run.path("config.yaml").display()
                );
            }
            sum += loss;
            events.step(epoch as i64 * nb as i64 + k as i64 + 1, &[("loss", loss)]);
            let done = (epoch - start) * nb + k + 1;
            let eta = t_all.elapsed().as_secs_f64() / done as f64 * ((plan.epochs - start) * nb - done) as f64;
            write!(log, "\repoch {}/{} [{}/{nb}] loss {:.4} ETA {:.0}s   ", epoch + 1, plan.epochs, k + 1, sum / (k + 1) as f64, eta)?;
            log.flush()?;
        }
        checkpoint::save(run, model.state()?, epoch + 1)?;
        let mean = sum / nb.max(1) as f64;
        let e = EpochLog { epoch: epoch + 1, loss_g: mean, loss_adv: None, loss_d: None, loss_s: mean, seconds: t0.elapsed().as_secs_f64() };
        append_history(run, &e)?;
        events.epoch(&e);
        writeln!(log)?;
        if opts.stop_after_epochs == Some(epoch + 1) {
            return Ok(FitOutcome::Stopped);
        }
    }
    Ok(FitOutcome::Finished)
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

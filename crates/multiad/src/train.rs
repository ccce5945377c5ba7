//! Training (Algorithm 1): frozen teacher, cosine distillation (Eqs 6-8),
//! discriminator and adversarial term (Eqs 9-12), alternating Adam updates
//! (D first with the student's features detached, then S with D held fixed),
//! a checkpoint after every epoch, resumption, and a stop on a non-finite
//! loss that leaves the last good checkpoint intact.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad_data::{BatchLoader, ImageConfig};
use multiad_nn::{Adam, AdamConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::anomaly_map::{fuse, image_scores, StatsAccumulator};
use crate::config::RunDirConfig;
use crate::loss::{adversarial_loss, discriminator_loss_smoothed, distillation_loss};
use crate::model::{streams, MultiAd};
use multiad_detector::epochs::FeatureCache;
use multiad_detector::history::append_history;
pub use multiad_detector::history::{read_history, EpochLog};
use multiad_detector::{checkpoint, save_tensors_atomic, write_atomic, RunDir};

/// Written last: training finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingSummary {
    #[serde(default)]
    pub method: String,
    pub epochs: usize,
    pub train_images: usize,
    pub seconds: f64,
    pub student_parameters: usize,
    pub discriminator_parameters: usize,
    /// Peak resident memory of the training process (Linux), MiB.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

pub fn image_config(size: u32) -> ImageConfig {
    ImageConfig::square(size)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// What a checkpoint holds besides the weights.
struct Resume {
    epochs_done: usize,
    rng: ChaCha8Rng,
}

fn save_checkpoint(run: &RunDir, model: &MultiAd, opt_s: &Adam, opt_d: Option<&Adam>, epochs_done: usize, rng: &ChaCha8Rng) -> Result<()> {
    let mut t = model.weights();
    t.extend(opt_s.state("opt_s.")?);
    if let Some(o) = opt_d {
        t.extend(o.state("opt_d.")?);
    }
    let dev = &model.device;
    t.insert("meta.rng_seed".into(), Tensor::new(&rng.get_seed()[..], dev)?);
    let pos = rng.get_word_pos();
    t.insert("meta.rng_word_pos".into(), Tensor::new(&[(pos >> 64) as i64, (pos & u64::MAX as u128) as u64 as i64], dev)?);
    checkpoint::save(run, t, epochs_done)
}

/// Restores the latest usable checkpoint (the previous one when the latest
/// is torn; see `multiad_detector::checkpoint`), `None` when there is none.
fn load_checkpoint(run: &RunDir, model: &MultiAd, opt_s: &mut Adam, mut opt_d: Option<&mut Adam>, log: &mut dyn Write) -> Result<Option<Resume>> {
    let restored = checkpoint::load_with(run, &model.device, log, |t, path| {
        model.load_weights(t, path)?;
        opt_s.load_state(t, "opt_s.").with_context(|| format!("{}", path.display()))?;
        if let Some(o) = opt_d.as_deref_mut() {
            o.load_state(t, "opt_d.").with_context(|| format!("{}", path.display()))?;
        }
        let get = |k: &str| t.get(k).with_context(|| format!("{}: `{k}` is missing", path.display()));
        let seed: Vec<u8> = get("meta.rng_seed")?.to_vec1::<u8>()?;
        let pos = get("meta.rng_word_pos")?.to_vec1::<i64>()?;
        let (Ok(seed), [hi, lo]) = (<[u8; 32]>::try_from(seed), pos.as_slice()) else {
            bail!("{}: bad RNG state", path.display());
        };
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_word_pos(((*hi as u64 as u128) << 64) | *lo as u64 as u128);
        Ok(rng)
    })?;
    Ok(restored.map(|(rng, epochs_done)| Resume { epochs_done, rng }))
}

/// How `train` is called.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainOptions {
    /// Continue from the run's checkpoint.
    pub resume: bool,
    /// Stop (as if interrupted) once this many epochs are done in total,
    /// without finishing the run; for tests of resumption.
    pub stop_after_epochs: Option<usize>,
}

/// Trains the run in `run` (new, or resumed from its checkpoint). `log` gets
/// progress lines. Returns `None` when stopped early by `stop_after_epochs`.
pub fn train(run: &RunDir, opts: TrainOptions, log: &mut dyn Write) -> Result<Option<MultiAd>> {
    let resume = opts.resume;
    let cfg = run.config()?;
    let data = run.data()?;
    let dataset = data.load()?;
    let device = Device::Cpu;
    let model = MultiAd::build(&cfg, &device)?;
    let tc = &cfg.train;
    let adam = |lr| AdamConfig { lr, beta1: tc.beta1, beta2: tc.beta2, eps: 1e-8, weight_decay: 0.0 };
    let mut opt_s = Adam::new(model.student_params.trainable(), adam(tc.lr))?;
    let mut opt_d = if model.disc.is_some() { Some(Adam::new(model.disc_params.trainable(), adam(tc.disc_lr))?) } else { None };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ streams::DROPOUT);
    let mut start = 0;
    if resume {
        match load_checkpoint(run, &model, &mut opt_s, opt_d.as_mut(), log)? {
            Some(r) => {
                start = r.epochs_done;
                rng = r.rng;
                writeln!(log, "resuming {} after epoch {start}", run.dir.display())?;
            }
            None => writeln!(log, "no checkpoint in {}; starting from epoch 1", run.dir.display())?,
        }
    }
    let n = dataset.train.len();
    let bs = tc.batch_size.min(n);
    if bs < 2 {
        bail!("{}: training needs at least 2 normal images, found {n}", dataset.root.display());
    }
    writeln!(
        log,
        "training {} on {} ({n} images, {}x{}), student {} parameters{}",
        cfg.preset,
        dataset.name,
        cfg.image_size,
        cfg.image_size,
        model.student_params.num_parameters(),
        if model.disc.is_some() { format!(", discriminator {}", model.disc_params.num_parameters()) } else { String::new() }
    )?;
    let img_cfg = image_config(cfg.image_size);
    let mut cache = FeatureCache::new(tc.teacher_cache_mib);
    let t_start = Instant::now();
    let mut done_seconds = 0.0;
    let mut events = multiad_detector::events::RunEvents::open(run, "train");
    events.start(start as i64 * (n / bs) as i64 + 1); // drop_last batches per epoch
    for epoch in start..tc.epochs {
        let t_epoch = Instant::now();
        // The order depends on the seed and the epoch only, so a resumed run
        // sees the batches an uninterrupted one would.
        let loader = BatchLoader::new(dataset.train.clone(), img_cfg, bs).shuffled(cfg.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)).drop_last(true);
        let nb = loader.num_batches();
        // Flips are drawn per epoch from their own stream: a resumed run
        // (which restarts at an epoch boundary) draws the same ones.
        let mut flip_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ streams::FLIPS ^ (epoch as u64).wrapping_mul(0x9e37_79b9));
        let (mut sg, mut sa, mut sd, mut ss) = (0.0, 0.0, 0.0, 0.0);
        let mut d_steps = 0usize;
        for (k, batch) in loader.iter().enumerate() {
            let batch = batch?;
            let axes: Vec<usize> = tc.flips.axes().iter().copied().filter(|_| flip_rng.random_bool(0.5)).collect();
            // A flipped batch's teacher features are computed afresh: strided
            // layers sample a flipped image on another grid (and Lite0's
            // TF-style padding is one-sided), so flipped cached features
            // would not be the same.
            let (images, t_feats) = if axes.is_empty() {
                let t = cache.get(&batch.images, &batch.indices, |x| model.teacher.forward(x))?;
                (batch.images.clone(), t)
            } else {
                let x = batch.images.flip(&axes)?;
                let t = model.teacher.forward(&x)?;
                (x, t)
            };
            let plan = StepPlan::at(&cfg.discriminator, epoch * nb + k, nb);
            let l = match train_step(&model, &mut opt_s, opt_d.as_mut(), plan, &images, &t_feats, &mut rng, &mut |_, _| {}) {
                Ok(l) => l,
                Err(e) => match e.downcast_ref::<NonFinite>() {
                    Some(nf) => bail!("{}{}", nf.detail.as_deref().map(|d| format!("{d}: ")).unwrap_or_default(), nan_message(run, nf.which, epoch, k, start)),
                    None => return Err(e),
                },
            };
            sg += l.g;
            ss += l.s;
            if let Some(d) = l.d {
                sd += d;
                d_steps += 1;
            }
            sa += l.adv.unwrap_or(0.0);
            let global = (epoch * nb + k + 1) as i64;
            match (l.d, l.adv) {
                (Some(d), Some(adv)) => events.step(global, &[("loss_g", l.g), ("loss_s", l.s), ("loss_d", d), ("loss_adv", adv)]),
                (None, Some(adv)) => events.step(global, &[("loss_g", l.g), ("loss_s", l.s), ("loss_adv", adv)]),
                _ => events.step(global, &[("loss_g", l.g), ("loss_s", l.s)]),
            }
            let elapsed = done_seconds + t_epoch.elapsed().as_secs_f64();
            let steps_done = (epoch - start) * nb + k + 1;
            let eta = elapsed / steps_done as f64 * ((tc.epochs - start) * nb - steps_done) as f64;
            write!(
                log,
                "\repoch {}/{} [{}/{nb}] L_G {:.4}{} ETA {}   ",
                epoch + 1,
                tc.epochs,
                k + 1,
                sg / (k + 1) as f64,
                if model.disc.is_some() { format!(" L_D {:.4} L_adv {:.4}", sd / d_steps.max(1) as f64, sa / (k + 1) as f64) } else { String::new() },
                fmt_secs(eta)
            )?;
            log.flush()?;
        }
        let nbf = nb.max(1) as f64;
        let secs = t_epoch.elapsed().as_secs_f64();
        done_seconds += secs;
        let entry = EpochLog {
            epoch: epoch + 1,
            loss_g: sg / nbf,
            loss_adv: model.disc.as_ref().map(|_| sa / nbf),
            // L_D averages the batches on which D stepped (`update_every`).
            loss_d: model.disc.as_ref().map(|_| sd / d_steps.max(1) as f64),
            loss_s: ss / nbf,
            seconds: secs,
        };
        save_checkpoint(run, &model, &opt_s, opt_d.as_ref(), epoch + 1, &rng)?;
        append_history(run, &entry)?;
        events.epoch(&entry);
        writeln!(log)?;
        if opts.stop_after_epochs == Some(epoch + 1) {
            return Ok(None);
        }
    }
    // Final weights, then Ψ's statistics from the training images.
    save_tensors_atomic(&model.weights(), &run.path("model.safetensors"))?;
    let mut model = model;
    fit_fusion(&mut model, &dataset.train, log)?;
    write_atomic(&run.path("fusion.json"), serde_json::to_string_pretty(&model.fusion)?.as_bytes())?;
    let summary = TrainingSummary {
        method: crate::METHOD.into(),
        epochs: tc.epochs,
        train_images: n,
        seconds: t_start.elapsed().as_secs_f64(),
        student_parameters: model.student_params.num_parameters(),
        discriminator_parameters: model.disc_params.num_parameters(),
        peak_rss_mib: multiad_detector::peak_rss_mib(),
    };
    write_atomic(&run.path("training.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    writeln!(log, "trained in {}", fmt_secs(summary.seconds))?;
    Ok(Some(model))
}

/// What one step of Algorithm 1 does, from the discriminator's schedule
/// knobs (`update_every`, `lambda_warmup_epochs`); the defaults give the
/// paper's step (D every batch, the full λ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// λ of Eq 12 for this step.
    pub lambda: f64,
    /// Whether D takes its Adam step.
    pub update_d: bool,
    /// One-sided label smoothing ε of L_D.
    pub label_smoothing: f64,
}

impl StepPlan {
    /// The plan of the run's step `step` (0-based, counted over the whole
    /// run), with `batches` steps per epoch.
    pub fn at(d: &crate::config::DiscriminatorConfig, step: usize, batches: usize) -> Self {
        let ramp = d.lambda_warmup_epochs * batches;
        let lambda = if ramp == 0 { d.lambda } else { d.lambda * ((step + 1) as f64 / ramp as f64).min(1.0) };
        Self { lambda, update_d: step % d.update_every.max(1) == 0, label_smoothing: d.label_smoothing }
    }
}

/// The losses of one optimisation step.
#[derive(Debug, Clone, Copy)]
pub struct StepLosses {
    /// L_G (Eq 8).
    pub g: f64,
    /// L_D (Eq 10), when D is on and stepped, and L_adv (Eq 11), when D is on.
    pub d: Option<f64>,
    pub adv: Option<f64>,
    /// The student's objective L_G + λ·L_adv (Eq 12).
    pub s: f64,
}

/// Which network's gradients [`train_step`] shows its inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Discriminator,
    Student,
}

/// A loss or gradient that became NaN or infinite in [`train_step`].
#[derive(Debug)]
pub struct NonFinite {
    pub which: &'static str,
    /// The optimiser's own message, when it found the gradient non-finite.
    pub detail: Option<String>,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} loss or its gradient became non-finite", self.which)
    }
}

impl std::error::Error for NonFinite {}

/// Algorithm 1's inner step on one batch (`t_feats`: the teacher's features
/// of `images`): with D on, D is updated first (T real, S fake and
/// detached; skipped when `plan.update_d` is false), then S against the
/// updated D on L_G + λ·L_adv (λ from `plan`); with D off, S on L_G. `inspect` sees each gradient store just before its optimiser
/// step (the differential test reads them; training passes a no-op).
// Eight arguments: the training loop's state, passed apart so that the
// differential test can drive one step (issue 23 folds this into the shared loop).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    model: &MultiAd,
    opt_s: &mut Adam,
    opt_d: Option<&mut Adam>,
    plan: StepPlan,
    images: &Tensor,
    t_feats: &[Tensor],
    rng: &mut ChaCha8Rng,
    inspect: &mut dyn FnMut(Network, &candle_core::backprop::GradStore),
) -> Result<StepLosses> {
    let non_finite = |which: &'static str, detail: Option<String>| anyhow::Error::new(NonFinite { which, detail });
    let s_feats = model.student.forward(images, true)?;
    let lg = distillation_loss(t_feats, &s_feats)?;
    let (ls, d, adv) = match (&model.disc, opt_d) {
        (Some(disc), Some(od)) => {
            let ldv = if plan.update_d {
                // Update D: T real, S fake (detached: S is not updated here).
                let s_det: Vec<Tensor> = s_feats.iter().map(|f| f.detach()).collect();
                let real = disc.forward(&disc.prepare(t_feats)?, true, rng)?;
                let fake = disc.forward(&disc.prepare(&s_det)?, true, rng)?;
                let ld = discriminator_loss_smoothed(&real, &fake, plan.label_smoothing)?;
                let ldv = scalar(&ld)?;
                if !ldv.is_finite() {
                    return Err(non_finite("discriminator", None));
                }
                let grads = ld.backward()?;
                inspect(Network::Discriminator, &grads);
                od.step(&grads).map_err(|e| non_finite("discriminator", Some(e.to_string())))?;
                Some(ldv)
            } else {
                None
            };
            // Update S against the updated D (D's step is not taken here).
            let fake = disc.forward(&disc.prepare(&s_feats)?, true, rng)?;
            let ladv = adversarial_loss(&fake)?;
            let advv = scalar(&ladv)?;
            ((lg.clone() + (ladv * plan.lambda)?)?, ldv, Some(advv))
        }
        _ => (lg.clone(), None, None),
    };
    let lsv = scalar(&ls)?;
    if !lsv.is_finite() {
        return Err(non_finite("student", None));
    }
    let grads = ls.backward()?;
    inspect(Network::Student, &grads);
    opt_s.step(&grads).map_err(|e| non_finite("student", Some(e.to_string())))?;
    Ok(StepLosses { g: scalar(&lg)?, d, adv, s: lsv })
}

fn nan_message(run: &RunDir, which: &str, epoch: usize, step: usize, start: usize) -> String {
    let ckpt = run.path("checkpoint.safetensors");
    let kept = if ckpt.is_file() {
        format!("the last good checkpoint ({} after epoch {}) is intact", ckpt.display(), epoch.max(start))
    } else {
        "no checkpoint had been written yet".into()
    };
    format!(
        "the {which} loss or its gradient became non-finite (NaN or infinite) in epoch {}, batch {}; training stopped and {kept}. \
         Lower train.lr / train.disc_lr or discriminator.lambda in {} and pass --resume",
        epoch + 1,
        step + 1,
        run.path("config.yaml").display()
    )
}

/// Fits Ψ's statistics on (up to `inference.fit_images`) training images.
pub fn fit_fusion(model: &mut MultiAd, train: &[multiad_data::Sample], log: &mut dyn Write) -> Result<()> {
    let cfg = &model.cfg;
    let take = if cfg.inference.fit_images == 0 { train.len() } else { cfg.inference.fit_images.min(train.len()) };
    let loader = BatchLoader::new(train[..take].to_vec(), image_config(cfg.image_size), cfg.inference.batch_size);
    let mut acc = StatsAccumulator::default();
    let mut per_batch_maps = Vec::new();
    for b in loader.iter() {
        let b = b?;
        let maps = model.layer_maps(&b.images)?;
        acc.add(&maps)?;
        per_batch_maps.push(maps);
    }
    let mut stats = acc.finish(0.0);
    // The largest training score under the fitted Ψ (for heat-map scaling).
    let s = cfg.image_size as usize;
    let mut max_score = 0f64;
    for maps in &per_batch_maps {
        let st = if cfg.inference.mff { Some(&stats) } else { None };
        let fused = fuse(maps, st, cfg.cell_grid(), s, s, cfg.inference.sigma)?;
        for v in image_scores(&fused)? {
            max_score = max_score.max(v as f64);
        }
    }
    stats.train_max_score = max_score;
    writeln!(log, "fitted Ψ on {} training images: layer means {:?}, stds {:?}", stats.images, round(&stats.mean), round(&stats.std))?;
    model.fusion = Some(stats);
    Ok(())
}

fn round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1e4).round() / 1e4).collect()
}

#[cfg(test)]
mod tests {
    use super::StepPlan;
    use crate::config::DiscriminatorConfig;

    #[test]
    fn the_default_plan_is_algorithm_1() {
        let d = DiscriminatorConfig::default();
        for step in [0, 1, 7, 1000] {
            assert_eq!(StepPlan::at(&d, step, 10), StepPlan { lambda: d.lambda, update_d: true, label_smoothing: 0.0 });
        }
    }

    #[test]
    fn lambda_ramps_over_the_warm_up_and_d_skips_batches() {
        let d = DiscriminatorConfig { lambda: 0.01, lambda_warmup_epochs: 2, update_every: 3, ..Default::default() };
        let lam = |s| StepPlan::at(&d, s, 5).lambda;
        assert!((lam(0) - 0.001).abs() < 1e-12 && (lam(4) - 0.005).abs() < 1e-12);
        assert_eq!(lam(9), 0.01);
        assert_eq!(lam(50), 0.01);
        let upd: Vec<bool> = (0..7).map(|s| StepPlan::at(&d, s, 5).update_d).collect();
        assert_eq!(upd, [true, false, false, true, false, false, true]);
    }
}

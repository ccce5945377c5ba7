//! Training (Algorithm 1): frozen teacher, cosine distillation (Eqs 6-8),
//! discriminator and adversarial term (Eqs 9-12), alternating Adam updates
//! (D first with the student's features detached, then S with D held fixed).
//! The epochs, checkpoints, resumption and the stop on a non-finite loss are
//! the shared loop's (`multiad_detector::epochs`); this is one step of it
//! ([`Trainer`]), and Ψ's statistics fitted afterwards ([`fit_fusion`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use multiad_data::{Batch, BatchLoader};
use multiad_detector::epochs::{EpochModel, FeatureCache, NonFinite, StepLosses};
use multiad_detector::Detector;
use multiad_nn::{Adam, AdamConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::anomaly_map::{fuse, image_scores, StatsAccumulator};
use crate::loss::{adversarial_loss, discriminator_loss_smoothed, distillation_loss_hardest};
use crate::model::{streams, MultiAd};

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// Algorithm 1's state between steps: both optimisers, the dropout stream
/// (saved in checkpoints, so that a resumed run draws what an uninterrupted
/// one would), the teacher's feature cache, and where in the run it is.
pub struct Trainer<'a> {
    model: &'a MultiAd,
    opt_s: Adam,
    opt_d: Option<Adam>,
    dropout: ChaCha8Rng,
    cache: FeatureCache,
    /// Flips are drawn per epoch from their own stream: a resumed run
    /// (which restarts at an epoch boundary) draws the same ones.
    flips: ChaCha8Rng,
    /// The zoom's draws, a stream of their own so that turning the zoom on
    /// leaves the flips' draws as they were.
    zoom: ChaCha8Rng,
    epoch: usize,
    batches: usize,
    batch: usize,
}

impl<'a> Trainer<'a> {
    pub fn new(model: &'a MultiAd) -> Result<Self> {
        let tc = &model.cfg.train;
        let adam = |lr| AdamConfig { lr, beta1: tc.beta1, beta2: tc.beta2, eps: 1e-8, weight_decay: 0.0 };
        let opt_s = Adam::new(model.student_params.trainable(), adam(tc.lr))?;
        let opt_d = if model.disc.is_some() { Some(Adam::new(model.disc_params.trainable(), adam(tc.disc_lr))?) } else { None };
        Ok(Self {
            model,
            opt_s,
            opt_d,
            dropout: ChaCha8Rng::seed_from_u64(model.cfg.seed ^ streams::DROPOUT),
            cache: FeatureCache::new(tc.teacher_cache_mib),
            flips: ChaCha8Rng::seed_from_u64(0),
            zoom: ChaCha8Rng::seed_from_u64(0),
            epoch: 0,
            batches: 0,
            batch: 0,
        })
    }
}

impl EpochModel for Trainer<'_> {
    fn begin_epoch(&mut self, epoch: usize, batches: usize) {
        let per_epoch = |stream: u64| ChaCha8Rng::seed_from_u64(self.model.cfg.seed ^ stream ^ (epoch as u64).wrapping_mul(0x9e37_79b9));
        (self.flips, self.zoom) = (per_epoch(streams::FLIPS), per_epoch(streams::ZOOM));
        (self.epoch, self.batches, self.batch) = (epoch, batches, 0);
    }

    fn step(&mut self, batch: &Batch) -> Result<StepLosses> {
        let model = self.model;
        let cfg = &model.cfg;
        let axes: Vec<usize> = cfg.train.flips.axes().iter().copied().filter(|_| self.flips.random_bool(0.5)).collect();
        let (_, _, h, w) = batch.images.dims4()?;
        let window = ZoomWindow::draw(&mut self.zoom, cfg.train.zoom, h, w);
        // A flipped or zoomed batch's teacher features are computed afresh:
        // a zoomed batch is another image, and strided layers sample a
        // flipped one on another grid (and Lite0's TF-style padding is
        // one-sided), so flipped cached features would not be the same.
        let (images, t_feats) = if axes.is_empty() && window.is_none() {
            let t = self.cache.get(&batch.images, &batch.indices, |x| model.teacher.forward(x))?;
            (batch.images.clone(), t)
        } else {
            let mut x = if axes.is_empty() { batch.images.clone() } else { batch.images.flip(&axes)? };
            if let Some(window) = window {
                x = window.apply(&x)?;
            }
            let t = model.teacher.forward(&x)?;
            (x, t)
        };
        let plan = StepPlan::at(&cfg.discriminator, self.epoch * self.batches + self.batch, self.batches);
        self.batch += 1;
        train_step(model, &mut self.opt_s, self.opt_d.as_mut(), plan, &images, &t_feats, &mut self.dropout, &mut |_, _| {})
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut t = self.model.weights();
        t.extend(self.opt_s.state("opt_s.")?);
        if let Some(o) = &self.opt_d {
            t.extend(o.state("opt_d.")?);
        }
        let dev = &self.model.device;
        t.insert("meta.rng_seed".into(), Tensor::new(&self.dropout.get_seed()[..], dev)?);
        let pos = self.dropout.get_word_pos();
        t.insert("meta.rng_word_pos".into(), Tensor::new(&[(pos >> 64) as i64, (pos & u64::MAX as u128) as u64 as i64], dev)?);
        Ok(t)
    }

    fn restore(&mut self, t: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
        self.model.load_weights(t, path)?;
        self.opt_s.load_state(t, "opt_s.").with_context(|| format!("{}", path.display()))?;
        if let Some(o) = self.opt_d.as_mut() {
            o.load_state(t, "opt_d.").with_context(|| format!("{}", path.display()))?;
        }
        let get = |k: &str| t.get(k).with_context(|| format!("{}: `{k}` is missing", path.display()));
        let seed: Vec<u8> = get("meta.rng_seed")?.to_vec1::<u8>()?;
        let pos = get("meta.rng_word_pos")?.to_vec1::<i64>()?;
        let (Ok(seed), [hi, lo]) = (<[u8; 32]>::try_from(seed), pos.as_slice()) else {
            bail!("{}: bad RNG state", path.display());
        };
        self.dropout = ChaCha8Rng::from_seed(seed);
        self.dropout.set_word_pos(((*hi as u64 as u128) << 64) | *lo as u64 as u128);
        Ok(())
    }
}

/// The part of a batch that `train.zoom` shows the networks, resized back
/// to the batch's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoomWindow {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

impl ZoomWindow {
    /// Draws a window of an `h` x `w` batch: its sides a share s of the
    /// batch's, s uniform in [1/zoom, 1], its place uniform. `None` when the
    /// zoom is off or the window rounds to the whole batch.
    pub fn draw(rng: &mut ChaCha8Rng, zoom: f64, h: usize, w: usize) -> Option<Self> {
        if zoom <= 1.0 {
            return None;
        }
        let share = rng.random_range(1.0 / zoom..=1.0);
        let side = |n: usize| ((n as f64 * share).round() as usize).clamp(1, n);
        let (height, width) = (side(h), side(w));
        if (height, width) == (h, w) {
            return None;
        }
        let (top, left) = (rng.random_range(0..=h - height), rng.random_range(0..=w - width));
        Some(Self { top, left, height, width })
    }

    /// The window of an (N, C, H, W) batch, resized back to H x W (bilinear,
    /// PyTorch's half-pixel `F.interpolate`).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let crop = x.narrow(2, self.top, self.height)?.narrow(3, self.left, self.width)?;
        Ok(multiad_nn::resize_bilinear(&crop, h, w)?)
    }
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

/// Which network's gradients [`train_step`] shows its inspector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Discriminator,
    Student,
}

/// Algorithm 1's inner step on one batch (`t_feats`: the teacher's features
/// of `images`): with D on, D is updated first (T real, S fake and
/// detached; skipped when `plan.update_d` is false), then S against the
/// updated D on L_G + λ·L_adv (λ from `plan`); with D off, S on L_G.
/// `inspect` sees each gradient store just before its optimiser step (the
/// differential test reads them; training passes a no-op).
// Eight arguments: [`Trainer`]'s state, passed apart so that the
// differential test can drive one step without a run directory.
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
    let s_feats = model.student.forward(images, true)?;
    let lg = distillation_loss_hardest(t_feats, &s_feats, model.cfg.train.hard_share)?;
    let (ls, d, adv) = match (&model.disc, opt_d) {
        (Some(disc), Some(od)) => {
            let ldv = if plan.update_d {
                // Update D: T real, S fake (detached: S is not updated here).
                let s_det: Vec<Tensor> = s_feats.iter().map(|f| f.detach()).collect();
                let real = disc.forward(&disc.prepare(t_feats)?, true, rng)?;
                let fake = disc.forward(&disc.prepare(&s_det)?, true, rng)?;
                let ld = discriminator_loss_smoothed(&real, &fake, plan.label_smoothing)?;
                Some(descend(&ld, Network::Discriminator, od, inspect)?)
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
    let lsv = descend(&ls, Network::Student, opt_s, inspect)?;
    Ok(StepLosses { g: scalar(&lg)?, d, adv, s: lsv })
}

/// One Adam step of `net` on `loss`; its value. A non-finite loss or
/// gradient stops before any weight moves ([`NonFinite`]); `inspect` sees the
/// gradients first.
fn descend(loss: &Tensor, net: Network, opt: &mut Adam, inspect: &mut dyn FnMut(Network, &candle_core::backprop::GradStore)) -> Result<f64> {
    let which = match net {
        Network::Discriminator => "discriminator",
        Network::Student => "student",
    };
    let non_finite = |detail: Option<String>| anyhow::Error::new(NonFinite { which: which.into(), detail });
    let v = scalar(loss)?;
    if !v.is_finite() {
        return Err(non_finite(None));
    }
    let grads = loss.backward()?;
    inspect(net, &grads);
    opt.step(&grads).map_err(|e| non_finite(Some(e.to_string())))?;
    Ok(v)
}

/// Fits Ψ's statistics on (up to `inference.fit_images`) training images.
/// Precise BN (`train.precise_bn`): the student's running statistics
/// replaced by the mean of its batch statistics over the training images,
/// in the order given, full batches only (training drops a final partial
/// batch too; all of them when there is no full one).
pub fn recompute_student_statistics(model: &MultiAd, train: &[multiad_data::Sample], log: &mut dyn Write) -> Result<()> {
    let bs = model.cfg.train.batch_size;
    let full = if train.len() >= bs { train.len() / bs * bs } else { train.len() };
    let loader = BatchLoader::new(train[..full].to_vec(), model.image_config(), bs).on_device(&model.device);
    let batches = loader.iter().map(|b| b.map(|b| b.images).map_err(|e| candle_core::Error::Msg(format!("{e:#}"))));
    let n = multiad_nn::batch_norm::recompute_running_statistics(&model.student_params, batches, |x| model.student.forward(x, true).map(|_| ()))?;
    writeln!(log, "recomputed the student's batch-norm statistics over {n} batches of {bs} training images (precise BN)")?;
    Ok(())
}

pub fn fit_fusion(model: &mut MultiAd, train: &[multiad_data::Sample], log: &mut dyn Write) -> Result<()> {
    let cfg = &model.cfg;
    let take = if cfg.inference.fit_images == 0 { train.len() } else { cfg.inference.fit_images.min(train.len()) };
    let loader = BatchLoader::new(train[..take].to_vec(), model.image_config(), cfg.inference.batch_size).on_device(&model.device);
    let mut acc = StatsAccumulator::default();
    let mut per_batch_maps = Vec::new();
    for b in loader.iter() {
        let b = b?;
        let maps = model.layer_maps(&b.images)?;
        acc.add(&maps)?;
        per_batch_maps.push(maps);
    }
    let mut stats = acc.finish(0.0, cfg.inference.psi_centre == crate::config::PsiCentre::Position);
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
    let centre = if stats.position_mean.is_some() { ", centred per position" } else { "" };
    writeln!(log, "fitted Ψ on {} training images{centre}: layer means {:?}, stds {:?}", stats.images, round(&stats.mean), round(&stats.std))?;
    model.fusion = Some(stats);
    Ok(())
}

fn round(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1e4).round() / 1e4).collect()
}

#[cfg(test)]
mod tests {
    use super::{StepPlan, ZoomWindow};
    use crate::config::DiscriminatorConfig;
    use candle_core::{Device, Tensor};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn zoom_windows_lie_inside_the_image_at_the_drawn_scale_and_repeat_with_the_seed() {
        let draws = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200).map(|_| ZoomWindow::draw(&mut rng, 1.25, 64, 48)).collect::<Vec<_>>()
        };
        let windows = draws(3);
        assert_eq!(windows, draws(3));
        assert_ne!(windows, draws(4));
        let mut smallest = 1.0f64;
        for z in windows.iter().flatten() {
            assert!(z.top + z.height <= 64 && z.left + z.width <= 48, "{z:?}");
            let share = z.height as f64 / 64.0;
            assert!((0.8 - 1.0 / 64.0..1.0).contains(&share), "{z:?}");
            assert!((z.width as f64 / 48.0 - share).abs() <= 1.0 / 48.0, "the sides keep the image's shape: {z:?}");
            smallest = smallest.min(share);
        }
        assert!(smallest < 0.82, "the draws reach the smallest window: {smallest}");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        assert_eq!(ZoomWindow::draw(&mut rng, 1.0, 64, 48), None, "zoom 1 is off");
    }

    #[test]
    fn a_zoom_window_is_resized_back_with_half_pixel_bilinear() {
        // A ramp along the columns: the window's column j samples the image at
        // left + (j + 0.5) · width / W − 0.5, held at the window's edge cells.
        let (h, w) = (4usize, 16usize);
        let ramp: Vec<f32> = (0..h * w).map(|i| (i % w) as f32).collect();
        let x = Tensor::from_vec(ramp, (1, 1, h, w), &Device::Cpu).unwrap();
        let z = ZoomWindow { top: 1, left: 4, height: 2, width: 8 };
        let y = z.apply(&x).unwrap();
        assert_eq!(y.dims(), &[1, 1, h, w]);
        let row: Vec<f32> = y.get(0).unwrap().get(0).unwrap().get(2).unwrap().to_vec1().unwrap();
        for (j, v) in row.iter().enumerate() {
            let want = (4.0 + (j as f32 + 0.5) * 8.0 / 16.0 - 0.5).clamp(4.0, 11.0);
            assert!((v - want).abs() < 1e-5, "column {j}: {v} against {want}");
        }
    }

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

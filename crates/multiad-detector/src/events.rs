//! A run's TensorBoard events (`<run>/events.out.tfevents.*`): the training
//! loops log every step's losses and every epoch's means, `train_run` the
//! resolved config, `test` the metrics and a few result panels. So
//! `tensorboard --logdir results/` shows every run, and a sweep directory
//! shows its cells side by side.
//!
//! Events are a view of the run, never its record: a failure to write them
//! (a full disk) is one warning, and the run goes on without them.

use std::path::Path;

use multiad_tensorboard::EventWriter;

use crate::history::EpochLog;
use crate::run_dir::RunDir;

pub struct RunEvents {
    w: Option<EventWriter>,
}

impl RunEvents {
    /// A new event file in the run directory, named `…<name>` (`train`, `test`).
    pub fn open(run: &RunDir, name: &str) -> RunEvents {
        Self::open_in(&run.dir, name)
    }

    pub fn open_in(dir: &Path, name: &str) -> RunEvents {
        match EventWriter::create(dir, name) {
            Ok(w) => RunEvents { w: Some(w) },
            Err(e) => {
                eprintln!("warning: no TensorBoard events for this run: {e:#}");
                RunEvents { w: None }
            }
        }
    }

    fn with(&mut self, f: impl FnOnce(&mut EventWriter) -> anyhow::Result<()>) {
        if let Some(w) = self.w.as_mut() {
            if let Err(e) = f(w) {
                eprintln!("warning: stopped writing TensorBoard events to {}: {e:#}", w.path().display());
                self.w = None;
            }
        }
    }

    pub fn scalar(&mut self, tag: &str, step: i64, v: f64) {
        self.with(|w| w.scalar(tag, step, v as f32));
    }

    pub fn text(&mut self, tag: &str, step: i64, markdown: &str) {
        self.with(|w| w.text(tag, step, markdown));
    }

    pub fn image_png(&mut self, tag: &str, step: i64, png: &[u8], width: u32, height: u32) {
        self.with(|w| w.image_png(tag, step, png, width, height));
    }

    /// A training loop starting (or resuming) before global step `step`
    /// (1-based): TensorBoard then hides the steps a killed attempt logged
    /// past the checkpoint.
    pub fn start(&mut self, step: i64) {
        self.with(|w| w.session_start(step));
    }

    /// The losses of one optimisation step (`step/<name>`), global step
    /// numbering from 1.
    pub fn step(&mut self, step: i64, losses: &[(&str, f64)]) {
        for (name, v) in losses {
            self.scalar(&format!("step/{name}"), step, *v);
        }
    }

    /// An epoch's means and time (`epoch/<name>`, step = the epoch, from 1).
    pub fn epoch(&mut self, e: &EpochLog) {
        let step = e.epoch as i64;
        self.scalar("epoch/loss_g", step, e.loss_g);
        self.scalar("epoch/loss_s", step, e.loss_s);
        if let Some(v) = e.loss_adv {
            self.scalar("epoch/loss_adv", step, v);
        }
        if let Some(v) = e.loss_d {
            self.scalar("epoch/loss_d", step, v);
        }
        self.scalar("epoch/seconds", step, e.seconds);
    }
}

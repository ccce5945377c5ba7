//! The one interface every anomaly-detection method of multiad implements,
//! and everything that is the same for all of them: the run directory, the
//! training record, and the test and predict protocol (metrics.json,
//! scores.csv, maps.npy, heat maps). A method written against [`Detector`]
//! gets `multiad train|test|predict` and `cargo xtask benchmark` for free;
//! `docs/methods.md` shows how to add one.

pub mod border;
pub mod by_type;
pub mod checkpoint;
pub mod config;
pub mod epochs;
pub mod evaluate;
pub mod events;
pub mod history;
pub mod maps;
pub mod results;
pub mod run_dir;
pub mod testing;

use std::io::Write;

use anyhow::Result;
use candle_core::Tensor;
use multiad_data::{ImageConfig, Sample};

pub use border::BorderMaxima;
pub use by_type::{metrics_by_defect_type, DefectTypeMetrics, ScoredImage};
pub use config::{method_of, preset_file, ConfigFile};
pub use evaluate::{load_fitted, peak_rss_mib, predict, test, train_run, TestMetrics, TestOptions, TrainingRecord};
pub use run_dir::{save_tensors_atomic, sync_dir, tmp_path, write_atomic, DataRef, RunConfig, RunDir};

/// How a fit was asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct FitOptions {
    /// Continue from the run's last checkpoint (methods that train in epochs).
    pub resume: bool,
    /// Stop, as if interrupted, once this many epochs are done (tests of resumption).
    pub stop_after_epochs: Option<usize>,
}

/// What a fit ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitOutcome {
    Finished,
    /// Stopped by [`FitOptions::stop_after_epochs`]; the checkpoint holds the state.
    Stopped,
}

/// An anomaly detector: learns from normal images only, then gives every
/// image an anomaly map at the input's resolution and a score.
pub trait Detector {
    /// The registry name (`multiad`, `padim`, ...).
    fn method(&self) -> &'static str;
    /// How images are decoded for this detector (size, normalisation).
    fn image_config(&self) -> ImageConfig;
    /// Images per inference batch.
    fn batch_size(&self) -> usize;
    /// Learns from the normal training images. Methods that train in epochs
    /// checkpoint into `run` and honour `opts.resume`.
    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome>;
    /// Writes what [`Detector::load`] needs into the run directory.
    fn save(&self, run: &RunDir) -> Result<()>;
    /// Restores a fitted detector saved by [`Detector::save`].
    fn load(&mut self, run: &RunDir) -> Result<()>;
    /// Anomaly maps (B, H, W) at the images' resolution and one score per
    /// image, for a batch of decoded images (B, 3, H, W).
    fn predict(&self, images: &Tensor) -> Result<(Tensor, Vec<f32>)>;
    /// The map value drawn as full red in heat maps, fixed per model so that
    /// colours mean the same in every picture; `None`: per-image min-max.
    fn heat_scale(&self) -> Option<f32> {
        None
    }
    /// Fields of training.json besides the shared [`TrainingRecord`] ones
    /// (Multi-AD: its epochs and parameter counts).
    fn training_details(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

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
use candle_core::{Device, Tensor};
use multiad_data::{ImageConfig, Sample};
use multiad_nn::ParamStore;

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

/// What the shared protocol needs to know of a detector besides its maps.
#[derive(Debug, Clone)]
pub struct DetectorSpec {
    /// The registry name (`multiad`, `padim`, ...).
    pub method: &'static str,
    /// How images are decoded for it (size, normalisation).
    pub image: ImageConfig,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Where its tensors live (the device it was built on); the shared
    /// loops put images there.
    pub device: Device,
}

impl DetectorSpec {
    /// Square `size` x `size` inputs with ImageNet normalisation, on `device`.
    pub fn square(method: &'static str, size: u32, batch_size: usize, device: &Device) -> Self {
        Self { method, image: ImageConfig::square(size), batch_size, device: device.clone() }
    }
}

/// An anomaly detector: learns from normal images only, then gives every
/// image an anomaly map at the input's resolution and a score.
pub trait Detector {
    /// Its name, image decoding, inference batch and device.
    fn spec(&self) -> DetectorSpec;
    /// The parameter stores training changes, each with the prefix of its
    /// tensors' names in model.safetensors. The default [`Detector::save`]
    /// and [`Detector::load`] write and read exactly these.
    fn trained_stores(&self) -> Vec<(&ParamStore, &'static str)> {
        Vec::new()
    }
    /// Learns from the normal training images. Methods that train in epochs
    /// checkpoint into `run` and honour `opts.resume` ([`epochs::train_epochs`]).
    fn fit(&mut self, run: &RunDir, train: &[Sample], opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome>;
    /// Writes what [`Detector::load`] needs into the run directory; by
    /// default the trained stores into model.safetensors.
    fn save(&self, run: &RunDir) -> Result<()> {
        maps::save_stores(run, &self.trained_stores())
    }
    /// Restores a fitted detector saved by [`Detector::save`].
    fn load(&mut self, run: &RunDir) -> Result<()> {
        maps::load_stores(run, &self.trained_stores())
    }
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

    /// The registry name.
    fn method(&self) -> &'static str {
        self.spec().method
    }
    fn image_config(&self) -> ImageConfig {
        self.spec().image
    }
    fn batch_size(&self) -> usize {
        self.spec().batch_size
    }
    fn device(&self) -> Device {
        self.spec().device
    }
}

//! Multi-AD (Rahmaniar & Suzuki, Pattern Recognition 2026): teacher-student
//! knowledge distillation with squeeze-and-excitation, an adversarial
//! discriminator and convolution-enhanced multi-scale fusion.
//!
//! `docs/multiad.md` maps every equation of the paper to the code here.

pub mod anomaly_map;
pub mod config;
pub mod discriminator;
pub mod evaluate;
pub mod loss;
pub mod model;
pub mod student;
pub mod teacher;
pub mod train;

pub use config::{ExperimentConfig, RunDirConfig};
pub use evaluate::{predict, test, TestMetrics};
pub use model::MultiAd;
pub use multiad_detector::run_dir;
pub use multiad_detector::{DataRef, RunDir};

/// This method's name in the registry and in config files.
pub const METHOD: &str = "multiad";
pub use train::{train, TrainOptions};

/// Runtime defaults for every binary, test and bench, called first thing:
///
/// * fixes the number of compute threads once, from `RAYON_NUM_THREADS` or
///   the machine's available parallelism. Without it candle 0.11 works the
///   count out again on every operation by reading /proc/cpuinfo, which cost
///   15% of a training step in a profile on this machine;
/// * keeps freed memory for reuse (`multiad_nn::allocator`): page faults on
///   fresh activations were a quarter of a training step's profile.
pub fn set_default_threads() {
    multiad_nn::allocator::keep_freed_memory();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

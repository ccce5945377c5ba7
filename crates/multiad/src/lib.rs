//! Multi-AD (Rahmaniar & Suzuki, Pattern Recognition 2026): teacher-student
//! knowledge distillation with squeeze-and-excitation, an adversarial
//! discriminator and convolution-enhanced multi-scale fusion, as a
//! [`multiad_detector::Detector`] like every other method: it trains through
//! the shared epoch loop and is tested through the shared protocol.
//!
//! `docs/multiad.md` maps every equation of the paper to the code here.

pub mod anomaly_map;
pub mod config;
pub mod detector;
pub mod discriminator;
pub mod frame;
pub mod loss;
pub mod model;
pub mod student;
pub mod teacher;
pub mod train;

pub use config::ExperimentConfig;
pub use detector::load_trained;
pub use model::MultiAd;

/// This method's name in the registry and in config files.
pub const METHOD: &str = "multiad";

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
pub mod run_dir;
pub mod student;
pub mod teacher;
pub mod train;

pub use config::ExperimentConfig;
pub use evaluate::{predict, test, TestMetrics};
pub use model::MultiAd;
pub use run_dir::{DataRef, RunDir};
pub use train::train;

//! Metrics for anomaly detection, following the protocols of the papers the
//! field compares against:
//!
//! * [`BinaryScores`]: image AUROC and pixel AUROC (exact, ties counted half as
//!   in scikit-learn's `roc_auc_score`), F1-max and ROC curve points. Scores are
//!   kept as sortable `u32` keys and radix-sorted, so 10^8 pixels cost about
//!   800 MB and a few seconds.
//! * [`aupro`]: the per-region overlap curve of the MVTec AD reference
//!   evaluation, integrated up to a false-positive-rate limit (0.3) and divided
//!   by that limit.
//!
//! Every function returns a [`MetricError`] instead of panicking when the metric
//! is undefined (one class only, NaN scores, mismatched lengths).

mod components;
mod pro;
mod roc;
mod sort;

pub use components::{label_components, Components};
pub use pro::{aupro, pro_curve, AnomalyMap, ProCurve, DEFAULT_FPR_LIMIT};
pub use roc::{BinaryScores, F1Max, RocCurve, SortedScores};

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MetricError {
    #[error("{metric} is undefined: the data has no {missing} samples (only one class present)")]
    OneClass { metric: &'static str, missing: &'static str },
    #[error("score {index} is NaN; anomaly scores must be finite or infinite numbers")]
    NaN { index: usize },
    #[error("length mismatch: {what}")]
    Shape { what: String },
    #[error("invalid argument: {0}")]
    Invalid(String),
}

//! Preparing medical volumes into BMAD's released 2-D layout, so that the
//! paper's Brain and Liver sets can be rebuilt from their public sources:
//!
//! - [`brats`]: BraTS2021 FLAIR volumes -> axial slices (BMAD's Brain);
//! - [`liver`]: BTCV (normal training slices) + LiTS (test slices with
//!   lesion masks) CT volumes -> windowed, liver-masked slices (BMAD's Liver).
//!
//! Both are deterministic (same inputs and seed -> byte-identical files),
//! split by patient, write into a staging directory renamed into place at
//! the end (an interrupted run leaves no half-written data set), refuse to
//! overwrite an existing output, and record their options and counts in
//! `prep.json`.

pub mod brats;
mod intensity;
pub mod liver;
mod output;
mod split;

pub use intensity::{equalize_histogram, minmax_to_u8, window_to_u8, Flip};
pub use output::{PrepError, PrepReport, Result, SplitCounts};
pub use split::{PatientSplit, SplitRule};

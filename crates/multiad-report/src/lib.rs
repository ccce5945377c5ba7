//! Pictures of results, shared by `multiad test|predict` and the sweeps:
//!
//! - [`panel`]: one picture per test image at the image's own resolution:
//!   image | ground truth | heat map | predicted mask as a contour;
//! - [`curves`]: a run's ROC and PRO curves and its score histograms;
//! - [`draw`]: drawing a Plotters figure as PNG bytes and SVG text at once,
//!   and the font PNG text needs.
//!
//! Everything here returns bytes; callers write them (atomically).

pub mod curves;
pub mod draw;
pub mod heat;
pub mod panel;

pub use draw::{png_bytes, png_text_available, render_both, Figure};
pub use heat::jet;

//! Data for anomaly detection: finding the files of a data set (MVTec AD, BMAD's
//! medical layout, or a folder layout for users' own data), decoding and resizing them, batching
//! them as candle tensors, and a synthetic defect generator for tests and the
//! demo.
//!
//! Every failure is a [`DataError`] that names the file or directory and what
//! is wrong with it.

mod batch;
mod bmad;
mod decode;
mod error;
mod folder;
mod mvtec;
mod sample;
mod suite;
pub mod synth;
pub mod testing;

pub use batch::{check_all, load_sample, Batch, BatchIter, BatchLoader, LoadedSample};
pub use bmad::{load_bmad, BmadSpec, BmadSplit};
pub use decode::{
    decode, decode_bytes, image_to_chw, load_image, load_mask, mask_values, ImageConfig, Normalization, IMAGENET_MEAN, IMAGENET_STD, MAX_IMAGE_BYTES,
    MAX_IMAGE_SIDE,
};
pub use error::{DataError, Result, IMAGE_EXTENSIONS};
pub use folder::{AbnormalDir, DatasetSpec, FolderSpec, MaskRule, MvtecSpec};
pub use mvtec::load_mvtec;
pub use sample::{Dataset, DatasetSummary, DefectCount, Label, Sample};
pub use suite::{MissingDataset, Suite, SuiteEntry};

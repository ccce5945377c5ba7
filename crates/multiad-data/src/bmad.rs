//! The layout of BMAD's released medical sets (Brain/BraTS2021, Liver/BTCV +
//! LiTS, RESC), and of anything prepared into it by `multiad prep`:
//!
//! ```text
//! train/good/*.png                 (also train/good/img/*.png)
//! {valid,test}/good/img/*.png      (also {valid,test}/good/*.png)
//! {valid,test}/Ungood/img/*.png
//! {valid,test}/Ungood/label/*.png  (also anomaly_mask/); a mask has its image's file name
//! ```
//!
//! BMAD evaluates on `test` and keeps `valid` for model selection; which one
//! a run uses is the spec's `split`.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::mvtec::list_images;
use crate::sample::{Dataset, Label, Sample};

/// Which labelled split of a BMAD set becomes the test set of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BmadSplit {
    Valid,
    #[default]
    Test,
}

impl BmadSplit {
    pub fn dir_name(self) -> &'static str {
        match self {
            BmadSplit::Valid => "valid",
            BmadSplit::Test => "test",
        }
    }
}

/// A BMAD-layout data set as written in YAML (`loader: bmad`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmadSpec {
    /// Relative to the data root given on the command line.
    pub path: PathBuf,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub split: BmadSplit,
}

impl BmadSpec {
    pub fn load(&self, data_root: &Path) -> Result<Dataset> {
        let mut ds = load_bmad(&data_root.join(&self.path), self.split)?;
        if let Some(n) = &self.name {
            ds.name = n.clone();
        }
        Ok(ds)
    }
}

/// The first of `candidates` that is a directory, or an error listing them all.
fn first_dir(candidates: &[PathBuf], what: &str) -> Result<PathBuf> {
    if let Some(d) = candidates.iter().find(|d| d.is_dir()) {
        return Ok(d.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    Err(DataError::layout(&candidates[0], format!("missing {what}; looked for {}", tried.join(" and "))))
}

/// Images directly in `dir`, or in `dir/img` when `dir` holds no images itself.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let direct = list_images(dir)?;
    let img = dir.join("img");
    if direct.is_empty() && img.is_dir() {
        return list_images(&img);
    }
    Ok(direct)
}

/// Loads a BMAD-layout data set; `split` chooses `valid/` or `test/` as the
/// test set. Every `Ungood` image must have its mask and every mask its image.
pub fn load_bmad(root: &Path, split: BmadSplit) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(DataError::layout(root, "BMAD data set directory not found"));
    }
    let train_dir = first_dir(&[root.join("train/good")], "train/good (normal training images)")?;
    let train_images = images_in(&train_dir)?;
    if train_images.is_empty() {
        return Err(DataError::layout(&train_dir, "no training images (png, jpg, tif, bmp) here or in img/"));
    }
    let normal = |image| Sample { image, mask: None, label: Label::Normal, defect_type: "good".into() };
    let train = train_images.into_iter().map(normal).collect();

    let split_dir = root.join(split.dir_name());
    if !split_dir.is_dir() {
        return Err(DataError::layout(&split_dir, format!("missing {}/: a BMAD set has valid/ and test/", split.dir_name())));
    }
    let good_dir = first_dir(&[split_dir.join("good")], "good/ (normal test images)")?;
    let mut test: Vec<Sample> = images_in(&good_dir)?.into_iter().map(normal).collect();

    let ungood = split_dir.join("Ungood");
    let ungood_img = first_dir(&[ungood.join("img")], "Ungood/img (anomalous images)")?;
    let label_dir = first_dir(&[ungood.join("label"), ungood.join("anomaly_mask")], "Ungood masks")?;
    let images = list_images(&ungood_img)?;
    for image in &images {
        let mask = label_dir.join(image.file_name().unwrap());
        if !mask.is_file() {
            return Err(DataError::file(image, format!("anomalous image has no mask; expected {}", mask.display())));
        }
        test.push(Sample { image: image.clone(), mask: Some(mask), label: Label::Anomalous, defect_type: "Ungood".into() });
    }
    for mask in list_images(&label_dir)? {
        if !ungood_img.join(mask.file_name().unwrap()).is_file() {
            return Err(DataError::file(&mask, format!("mask has no image in {}", ungood_img.display())));
        }
    }
    if test.iter().all(|s| s.label == Label::Normal) || test.iter().all(|s| s.label == Label::Anomalous) {
        return Err(DataError::layout(&split_dir, "a test split needs both good and Ungood images"));
    }
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Dataset { name, root: root.to_path_buf(), train, test })
}

//! Writing a prepared data set: a staging directory beside the output,
//! renamed into place when everything is written.

use std::path::{Path, PathBuf};

use multiad_nifti::NiftiError;

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("{}: {problem}", path.display())]
    At { path: PathBuf, problem: String },
    #[error(transparent)]
    Nifti(#[from] NiftiError),
}

impl PrepError {
    pub fn at(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        PrepError::At { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }
}

pub type Result<T> = std::result::Result<T, PrepError>;

/// Images written to one split, by label.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SplitCounts {
    pub patients: usize,
    pub good: usize,
    pub ungood: usize,
}

/// What a preparation wrote (also saved as `prep.json` with the options).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrepReport {
    pub out: PathBuf,
    pub train: SplitCounts,
    pub valid: SplitCounts,
    pub test: SplitCounts,
    /// Slices left out and why (e.g. constant slices, abnormal slices of
    /// training patients).
    pub skipped: std::collections::BTreeMap<String, usize>,
    /// Patient id -> split name.
    pub patients: std::collections::BTreeMap<String, String>,
}

/// The BMAD directories every prepared set has.
const LAYOUT: &[&str] = &["train/good", "valid/good/img", "valid/Ungood/img", "valid/Ungood/label", "test/good/img", "test/Ungood/img", "test/Ungood/label"];

pub(crate) struct Staging {
    out: PathBuf,
    tmp: PathBuf,
}

impl Staging {
    /// Refuses an existing output; clears a staging directory left by an
    /// interrupted run (it never holds a finished data set).
    pub fn new(out: &Path) -> Result<Self> {
        if out.exists() {
            return Err(PrepError::at(out, "already exists; refusing to overwrite a prepared data set (remove it or choose another --out)"));
        }
        let name = out.file_name().ok_or_else(|| PrepError::at(out, "--out needs a directory name"))?;
        let tmp = out.with_file_name(format!(".{}.partial", name.to_string_lossy()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| PrepError::at(&tmp, format!("cannot clear an interrupted run's staging directory: {e}")))?;
        }
        for d in LAYOUT {
            let p = tmp.join(d);
            std::fs::create_dir_all(&p).map_err(|e| PrepError::at(&p, format!("cannot create: {e}")))?;
        }
        Ok(Staging { out: out.to_path_buf(), tmp })
    }

    /// Writes an 8-bit greyscale PNG at `rel` inside the staging directory.
    pub fn png(&self, rel: &str, rows: usize, cols: usize, pixels: Vec<u8>) -> Result<()> {
        let path = self.tmp.join(rel);
        let img =
            image::GrayImage::from_raw(cols as u32, rows as u32, pixels).ok_or_else(|| PrepError::at(&path, "pixel count does not match the slice size"))?;
        img.save_with_format(&path, image::ImageFormat::Png).map_err(|e| PrepError::at(&path, format!("cannot write PNG: {e}")))
    }

    /// Writes `prep.json` and moves the data set into place.
    pub fn finish(self, manifest: &serde_json::Value) -> Result<PathBuf> {
        let m = self.tmp.join("prep.json");
        let text = serde_json::to_string_pretty(manifest).expect("a JSON value serialises");
        std::fs::write(&m, text + "\n").map_err(|e| PrepError::at(&m, format!("cannot write: {e}")))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|e| PrepError::at(&self.out, format!("cannot move the prepared set into place: {e}")))?;
        Ok(self.out)
    }
}

/// Every file under `dir`, recursively, sorted by path (so that patient order,
/// and with it every split and file, is the same on every machine).
pub(crate) fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(PrepError::at(dir, "directory not found"));
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| PrepError::at(&d, format!("cannot list directory: {e}")))?;
        for e in entries {
            let p = e.map_err(|e| PrepError::at(&d, format!("cannot list directory: {e}")))?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

impl PrepReport {
    pub(crate) fn counts(&mut self, split: crate::PatientSplit) -> &mut SplitCounts {
        match split {
            crate::PatientSplit::Train => &mut self.train,
            crate::PatientSplit::Valid => &mut self.valid,
            crate::PatientSplit::Test => &mut self.test,
        }
    }

    pub(crate) fn skip(&mut self, why: &str) {
        *self.skipped.entry(why.to_string()).or_default() += 1;
    }
}

/// Writes one slice in BMAD's layout: training slices to `train/good`, test
/// slices to `<split>/good/img` or `<split>/Ungood/{img,label}`.
pub(crate) fn write_slice(
    staging: &Staging,
    report: &mut PrepReport,
    split: crate::PatientSplit,
    name: &str,
    (rows, cols): (usize, usize),
    image: Vec<u8>,
    mask: Option<Vec<u8>>,
) -> Result<()> {
    let s = split.name();
    match (split, mask) {
        (crate::PatientSplit::Train, None) => {
            staging.png(&format!("train/good/{name}"), rows, cols, image)?;
            report.train.good += 1;
        }
        (crate::PatientSplit::Train, Some(_)) => report.skip("abnormal slice of a training patient"),
        (_, None) => {
            staging.png(&format!("{s}/good/img/{name}"), rows, cols, image)?;
            report.counts(split).good += 1;
        }
        (_, Some(mask)) => {
            staging.png(&format!("{s}/Ungood/img/{name}"), rows, cols, image)?;
            staging.png(&format!("{s}/Ungood/label/{name}"), rows, cols, mask)?;
            report.counts(split).ungood += 1;
        }
    }
    Ok(())
}

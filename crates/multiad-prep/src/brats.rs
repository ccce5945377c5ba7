//! BraTS2021 -> BMAD's Brain set.
//!
//! BMAD's protocol: FLAIR volumes (240 x 240 x 155), axial slices 60-99 of
//! each, a slice anomalous when its segmentation has any non-zero voxel (its
//! mask = segmentation != 0), patients split into train / valid / test, only
//! normal slices kept for training. Each slice is min-max scaled on its own to
//! 0..255 (the volumes' intensities are not comparable across scanners);
//! constant slices are skipped. Slices are written as `data[:, :, k]` of a
//! NumPy array read with nibabel would be (rows = first voxel axis), across
//! the axis the affine says is inferior-superior.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::intensity::minmax_to_u8;
use crate::output::{file_name, files_under, write_slice, Staging};
use crate::split::{random_split, PatientSplit, SplitRule};
use crate::{PrepError, PrepReport, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BratsOptions {
    /// Directory holding one directory per patient, at any depth.
    pub raw: PathBuf,
    pub out: PathBuf,
    /// A patient's FLAIR file is the one whose name ends with this
    /// (`flair.nii.gz` matches BraTS2021's `BraTS2021_00000_flair.nii.gz`).
    pub flair_suffix: String,
    /// Likewise for the segmentation (`seg.nii.gz`).
    pub seg_suffix: String,
    /// First and last axial slice kept (inclusive; BMAD: 60 and 99).
    pub first_slice: usize,
    pub last_slice: usize,
    /// `None`: by directory names when every patient sits in a
    /// train/validation/test directory, else random.
    pub split: Option<SplitRule>,
    pub valid_fraction: f64,
    pub test_fraction: f64,
    pub seed: u64,
}

impl BratsOptions {
    pub fn new(raw: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        BratsOptions {
            raw: raw.into(),
            out: out.into(),
            flair_suffix: "flair.nii.gz".into(),
            seg_suffix: "seg.nii.gz".into(),
            first_slice: 60,
            last_slice: 99,
            split: None,
            valid_fraction: 0.1,
            test_fraction: 0.2,
            seed: 0,
        }
    }
}

/// One patient's files.
#[derive(Debug, Clone)]
pub struct Patient {
    pub id: String,
    pub dir: PathBuf,
    pub flair: PathBuf,
    pub seg: PathBuf,
}

/// Patients under `raw`: directories holding exactly one file ending with
/// each suffix.
pub fn find_patients(opts: &BratsOptions) -> Result<Vec<Patient>> {
    let mut by_dir: BTreeMap<PathBuf, (Vec<PathBuf>, Vec<PathBuf>)> = BTreeMap::new();
    for f in files_under(&opts.raw)? {
        let name = file_name(&f);
        let dir = f.parent().unwrap_or(Path::new("")).to_path_buf();
        if name.ends_with(&opts.flair_suffix) {
            by_dir.entry(dir).or_default().0.push(f);
        } else if name.ends_with(&opts.seg_suffix) {
            by_dir.entry(dir).or_default().1.push(f);
        }
    }
    let mut out = Vec::new();
    for (dir, (flair, seg)) in by_dir {
        match (flair.as_slice(), seg.as_slice()) {
            ([f], [s]) => out.push(Patient { id: file_name(&dir), dir, flair: f.clone(), seg: s.clone() }),
            ([], _) => return Err(PrepError::at(&dir, format!("segmentation but no FLAIR file ending in {:?}", opts.flair_suffix))),
            (_, []) => return Err(PrepError::at(&dir, format!("FLAIR but no segmentation file ending in {:?}", opts.seg_suffix))),
            _ => return Err(PrepError::at(&dir, "more than one FLAIR or segmentation file matches; give more specific --flair/--seg suffixes")),
        }
    }
    if out.is_empty() {
        return Err(PrepError::at(&opts.raw, format!("no patient directory with a file ending in {:?}", opts.flair_suffix)));
    }
    let mut seen = BTreeMap::new();
    for p in &out {
        if let Some(other) = seen.insert(p.id.clone(), p.dir.clone()) {
            return Err(PrepError::at(&p.dir, format!("patient id {:?} also names {}", p.id, other.display())));
        }
    }
    Ok(out)
}

/// Assigns each patient a split under `rule`.
pub fn split_patients(patients: &[Patient], rule: SplitRule) -> Result<Vec<PatientSplit>> {
    match rule {
        SplitRule::Dirs => patients
            .iter()
            .map(|p| {
                let parent = p.dir.parent().map(file_name).unwrap_or_default();
                PatientSplit::from_dir_name(&parent)
                    .ok_or_else(|| PrepError::at(&p.dir, "split by directories, but this patient is not inside a train/, validation/ or test/ directory"))
            })
            .collect(),
        SplitRule::Random { valid, test, seed } => {
            if !(valid >= 0.0 && test >= 0.0 && valid + test < 1.0) {
                return Err(PrepError::at("--valid-fraction/--test-fraction", format!("{valid} + {test} must be non-negative and below 1")));
            }
            let ids: Vec<String> = patients.iter().map(|p| p.id.clone()).collect();
            Ok(random_split(&ids, valid, test, seed))
        }
    }
}

/// The rule `opts` asks for, resolving "auto".
pub fn resolve_rule(opts: &BratsOptions, patients: &[Patient]) -> SplitRule {
    opts.split.unwrap_or_else(|| {
        let by_dirs = patients.iter().all(|p| p.dir.parent().map(file_name).and_then(|n| PatientSplit::from_dir_name(&n)).is_some());
        if by_dirs {
            SplitRule::Dirs
        } else {
            SplitRule::Random { valid: opts.valid_fraction, test: opts.test_fraction, seed: opts.seed }
        }
    })
}

/// Runs the whole preparation; `log` receives one line per patient.
pub fn prepare(opts: &BratsOptions, log: &mut dyn FnMut(&str)) -> Result<PrepReport> {
    if opts.first_slice > opts.last_slice {
        return Err(PrepError::at(&opts.raw, format!("slice range {}..={} is empty", opts.first_slice, opts.last_slice)));
    }
    let patients = find_patients(opts)?;
    let rule = resolve_rule(opts, &patients);
    let splits = split_patients(&patients, rule)?;
    let staging = Staging::new(&opts.out)?;
    let mut report = PrepReport { out: opts.out.clone(), ..Default::default() };
    for (p, &split) in patients.iter().zip(&splits) {
        let flair = multiad_nifti::read(&p.flair)?;
        let seg = multiad_nifti::read(&p.seg)?;
        let shape = flair.shape3(&p.flair)?;
        if seg.shape3(&p.seg)? != shape {
            return Err(PrepError::at(&p.seg, format!("segmentation is {:?} but its FLAIR is {shape:?}", seg.shape)));
        }
        let axis = flair.axial_axis();
        if opts.last_slice >= shape[axis] {
            return Err(PrepError::at(&p.flair, format!("slice {} asked for, but the volume has {} axial slices", opts.last_slice, shape[axis])));
        }
        report.patients.insert(p.id.clone(), split.name().into());
        report.counts(split).patients += 1;
        let before = report.counts(split).clone();
        for k in opts.first_slice..=opts.last_slice {
            let (rows, cols, values) = flair.slice(axis, k);
            let (_, _, labels) = seg.slice(axis, k);
            let Some(image) = minmax_to_u8(&values) else {
                report.skip("constant FLAIR slice");
                continue;
            };
            let abnormal = labels.iter().any(|&v| v != 0.0);
            let mask = abnormal.then(|| labels.iter().map(|&v| if v != 0.0 { 255 } else { 0 }).collect());
            write_slice(&staging, &mut report, split, &format!("{}_{k:03}.png", p.id), (rows, cols), image, mask)?;
        }
        let c = report.counts(split).clone();
        log(&format!("{} -> {}: {} good, {} Ungood", p.id, split.name(), c.good - before.good, c.ungood - before.ungood));
    }
    let manifest = serde_json::json!({ "protocol": "brats2021 (BMAD Brain)", "options": opts, "split_rule": rule, "report": &report });
    staging.finish(&manifest)?;
    Ok(report)
}

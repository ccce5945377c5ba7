//! BTCV + LiTS -> BMAD's Liver set.
//!
//! BMAD's protocol: normal training slices from BTCV (abdominal CT of
//! patients without liver lesions): every axial slice that contains liver
//! (label 6); test slices from LiTS: every axial slice that contains liver
//! (label > 0), anomalous when it contains lesion (label 2), whose mask is
//! the lesion. Every slice is windowed to [-200, 250] HU, set to 0 outside
//! the liver, mirrored and histogram-equalised. LiTS patients are split into
//! valid and test by a seeded shuffle. File pairing: BTCV `img0001.nii.gz` ↔
//! `label0001.nii.gz`, LiTS `volume-N.nii` ↔ `segmentation-N.nii` (either
//! compressed or not), anywhere under the given directories.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::intensity::{equalize_histogram, window_to_u8, Flip};
use crate::output::{file_name, files_under, write_slice, Staging};
use crate::split::{random_split, PatientSplit};
use crate::{PrepError, PrepReport, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct LiverOptions {
    pub btcv: PathBuf,
    pub lits: PathBuf,
    pub out: PathBuf,
    /// CT window in Hounsfield units.
    pub hu_min: f32,
    pub hu_max: f32,
    /// BTCV's liver label.
    pub btcv_liver_label: u32,
    /// LiTS's lesion label (liver is 1, lesion 2).
    pub lits_lesion_label: u32,
    pub flip: Flip,
    pub equalize: bool,
    /// Share of LiTS patients in `valid/` (the rest in `test/`).
    pub valid_fraction: f64,
    pub seed: u64,
}

impl LiverOptions {
    pub fn new(btcv: impl Into<PathBuf>, lits: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        LiverOptions {
            btcv: btcv.into(),
            lits: lits.into(),
            out: out.into(),
            hu_min: -200.0,
            hu_max: 250.0,
            btcv_liver_label: 6,
            lits_lesion_label: 2,
            flip: Flip::Vertical,
            equalize: true,
            valid_fraction: 0.1,
            seed: 0,
        }
    }
}

/// (id, image, label) pairs: files named `<image_prefix>ID.nii[.gz]` matched
/// with `<label_prefix>ID.nii[.gz]`.
fn pairs(dir: &std::path::Path, image_prefix: &str, label_prefix: &str) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let mut images = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for f in files_under(dir)? {
        let name = file_name(&f);
        let Some(stem) = name.strip_suffix(".nii.gz").or_else(|| name.strip_suffix(".nii")) else { continue };
        if let Some(id) = stem.strip_prefix(image_prefix) {
            if let Some(prev) = images.insert(id.to_string(), f.clone()) {
                return Err(PrepError::at(&f, format!("a second image for id {id} (first: {})", prev.display())));
            }
        } else if let Some(id) = stem.strip_prefix(label_prefix) {
            if let Some(prev) = labels.insert(id.to_string(), f.clone()) {
                return Err(PrepError::at(&f, format!("a second label volume for id {id} (first: {})", prev.display())));
            }
        }
    }
    if images.is_empty() {
        return Err(PrepError::at(dir, format!("no {image_prefix}*.nii(.gz) volumes found")));
    }
    let mut out = Vec::new();
    for (id, img) in images {
        let label = labels.remove(&id).ok_or_else(|| PrepError::at(&img, format!("no label volume {label_prefix}{id}.nii(.gz) for this image")))?;
        out.push((id, img, label));
    }
    if let Some((id, l)) = labels.into_iter().next() {
        return Err(PrepError::at(&l, format!("label volume without an image {image_prefix}{id}.nii(.gz)")));
    }
    Ok(out)
}

/// One windowed, liver-masked, mirrored, equalised slice, or `None` when the
/// slice holds no liver.
fn liver_slice(
    opts: &LiverOptions,
    ct: &multiad_nifti::Volume,
    labels: &multiad_nifti::Volume,
    axis: usize,
    k: usize,
    is_liver: impl Fn(f32) -> bool,
) -> Option<(usize, usize, Vec<u8>, Vec<f32>)> {
    let (rows, cols, hu) = ct.slice(axis, k);
    let (_, _, mut lab) = labels.slice(axis, k);
    if !lab.iter().any(|&v| is_liver(v)) {
        return None;
    }
    let mut img = window_to_u8(&hu, opts.hu_min, opts.hu_max);
    for (p, &l) in img.iter_mut().zip(&lab) {
        if !is_liver(l) {
            *p = 0;
        }
    }
    opts.flip.apply(rows, cols, &mut img);
    opts.flip.apply(rows, cols, &mut lab);
    if opts.equalize {
        equalize_histogram(&mut img);
    }
    Some((rows, cols, img, lab))
}

fn read_pair(img: &std::path::Path, label: &std::path::Path) -> Result<(multiad_nifti::Volume, multiad_nifti::Volume, usize, usize)> {
    let ct = multiad_nifti::read(img)?;
    let lab = multiad_nifti::read(label)?;
    let shape = ct.shape3(img)?;
    if lab.shape3(label)? != shape {
        return Err(PrepError::at(label, format!("label volume is {:?} but its CT is {shape:?}", lab.shape)));
    }
    let axis = ct.axial_axis();
    Ok((ct, lab, axis, shape[axis]))
}

pub fn prepare(opts: &LiverOptions, log: &mut dyn FnMut(&str)) -> Result<PrepReport> {
    if !(opts.hu_min < opts.hu_max) {
        return Err(PrepError::at(&opts.out, format!("HU window [{}, {}] is empty", opts.hu_min, opts.hu_max)));
    }
    if !(0.0..1.0).contains(&opts.valid_fraction) {
        return Err(PrepError::at(&opts.out, format!("valid fraction {} must be in [0, 1)", opts.valid_fraction)));
    }
    let btcv = pairs(&opts.btcv, "img", "label")?;
    let lits = pairs(&opts.lits, "volume-", "segmentation-")?;
    let staging = Staging::new(&opts.out)?;
    let mut report = PrepReport { out: opts.out.clone(), ..Default::default() };

    let liver_label = opts.btcv_liver_label as f32;
    for (id, img, label) in &btcv {
        let (ct, lab, axis, depth) = read_pair(img, label)?;
        let pid = format!("btcv_{id}");
        report.patients.insert(pid.clone(), "train".into());
        report.train.patients += 1;
        let before = report.train.good;
        for k in 0..depth {
            if let Some((rows, cols, image, _)) = liver_slice(opts, &ct, &lab, axis, k, |v| v == liver_label) {
                write_slice(&staging, &mut report, PatientSplit::Train, &format!("{pid}_{k:03}.png"), (rows, cols), image, None)?;
            }
        }
        log(&format!("{pid} -> train: {} good", report.train.good - before));
    }

    let ids: Vec<String> = lits.iter().map(|(id, _, _)| id.clone()).collect();
    // Valid takes `valid_fraction`, test the rest; no LiTS patient trains.
    let splits: Vec<PatientSplit> = random_split(&ids, opts.valid_fraction, 1.0 - opts.valid_fraction, opts.seed)
        .into_iter()
        .map(|s| if s == PatientSplit::Valid { PatientSplit::Valid } else { PatientSplit::Test })
        .collect();
    let lesion = opts.lits_lesion_label as f32;
    for ((id, img, label), &split) in lits.iter().zip(&splits) {
        let (ct, lab, axis, depth) = read_pair(img, label)?;
        let pid = format!("lits_{id}");
        report.patients.insert(pid.clone(), split.name().into());
        report.counts(split).patients += 1;
        let (g0, u0) = (report.counts(split).good, report.counts(split).ungood);
        for k in 0..depth {
            if let Some((rows, cols, image, lab)) = liver_slice(opts, &ct, &lab, axis, k, |v| v > 0.0) {
                let abnormal = lab.contains(&lesion);
                let mask = abnormal.then(|| lab.iter().map(|&v| if v == lesion { 255 } else { 0 }).collect());
                write_slice(&staging, &mut report, split, &format!("{pid}_{k:03}.png"), (rows, cols), image, mask)?;
            }
        }
        let c = report.counts(split).clone();
        log(&format!("{pid} -> {}: {} good, {} Ungood", split.name(), c.good - g0, c.ungood - u0));
    }
    let manifest = serde_json::json!({ "protocol": "liver (BMAD Liver: BTCV + LiTS)", "options": opts, "report": &report });
    staging.finish(&manifest)?;
    Ok(report)
}

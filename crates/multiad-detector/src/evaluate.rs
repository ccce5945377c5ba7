//! The protocol every method shares: fitting into a run directory
//! (`training.json` marks it finished), `multiad test` (metrics of the
//! protocol over the test split) and `multiad predict` (heat maps).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad_data::{check_all, load_image, BatchLoader, Label};
use multiad_metrics::{aupro, AnomalyMap, BinaryScores, DEFAULT_FPR_LIMIT};
use serde::{Deserialize, Serialize};

use crate::border::{BorderCounter, BorderMaxima};
use crate::by_type::{metrics_by_defect_type, DefectTypeMetrics, ScoredImage};
use crate::run_dir::{write_atomic, RunDir};
use crate::{Detector, FitOptions, FitOutcome};

/// Written last by a fit: training finished. Methods may add fields of
/// their own (Multi-AD writes its epochs and parameter counts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    #[serde(default)]
    pub method: Option<String>,
    pub train_images: usize,
    pub seconds: f64,
    /// Peak resident memory of the fitting process (Linux), MiB.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

/// Fits `det` on the run's training images and saves it; writes
/// training.json unless the method wrote a richer one itself.
pub fn train_run(det: &mut dyn Detector, run: &RunDir, opts: FitOptions, log: &mut dyn Write) -> Result<FitOutcome> {
    if run.is_trained() {
        bail!("{} has finished training already; test it with `multiad test --run {}`", run.dir.display(), run.dir.display());
    }
    let t0 = Instant::now();
    let dataset = run.data()?.load()?;
    if dataset.train.is_empty() {
        bail!("{}: no normal training images", dataset.root.display());
    }
    // Every training image decoded once before the first epoch: a bad file
    // is reported with all the others now, not when its batch comes up.
    check_all(&dataset.train, &det.image_config())
        .with_context(|| format!("{}: the training images do not all load; fix or remove them", dataset.root.display()))?;
    if det.fit(run, &dataset.train, opts, log)? == FitOutcome::Stopped {
        return Ok(FitOutcome::Stopped);
    }
    det.save(run)?;
    if !run.is_trained() {
        let rec = TrainingRecord {
            method: Some(det.method().to_string()),
            train_images: dataset.train.len(),
            seconds: t0.elapsed().as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        };
        write_atomic(&run.path("training.json"), serde_json::to_string_pretty(&rec)?.as_bytes())?;
    }
    Ok(FitOutcome::Finished)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestMetrics {
    pub image_auroc: f64,
    /// Over normal images and anomalous images that have a mask.
    pub pixel_auroc: Option<f64>,
    pub aupro: Option<f64>,
    /// Image-level F1-max and the score threshold that reaches it.
    pub f1_max: f64,
    pub f1_threshold: f32,
    pub pixel_f1_max: Option<f64>,
    pub test_images: usize,
    pub seconds: f64,
    pub peak_rss_mib: Option<f64>,
    /// Each anomalous type against all normal test images
    /// ([`metrics_by_defect_type`]); empty in files written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_defect_type: BTreeMap<String, DefectTypeMetrics>,
    /// Where the maps peak ([`crate::border`]); absent in files written
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub border_maxima: Option<BorderMaxima>,
}

/// Peak resident memory of this process (Linux), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Writes a float32 array in NumPy's .npy format (readable by `numpy.load`).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Runs the test split through a fitted detector; writes metrics.json, scores.csv
/// and, with `save_maps`, maps.npy (N x H x W float32, rows in scores.csv order).
pub fn test(model: &dyn Detector, run: &RunDir, save_maps: bool, log: &mut dyn Write) -> Result<TestMetrics> {
    let t0 = Instant::now();
    let dataset = run.data()?.load()?;
    let img_cfg = model.image_config();
    let size = img_cfg.height as usize;
    if img_cfg.width != img_cfg.height {
        bail!("{}: test needs square inputs, the method asks for {}x{}", run.dir.display(), img_cfg.width, img_cfg.height);
    }
    check_all(&dataset.test, &img_cfg)
        .with_context(|| format!("{}: the test images do not all load; fix or remove them", dataset.root.display()))?;
    let loader = BatchLoader::new(dataset.test.clone(), img_cfg, model.batch_size());
    let mut image_scores = BinaryScores::new();
    let mut pixel = BinaryScores::new();
    let mut scores = vec![0f32; dataset.test.len()];
    let mut pro_maps: Vec<(Vec<f32>, Vec<u8>)> = Vec::new();
    // Which of pro_maps belongs to each test image (none: no ground truth).
    let mut map_of: Vec<Option<usize>> = vec![None; dataset.test.len()];
    let mut border = BorderCounter::new(size);
    let mut all_maps: Vec<f32> = if save_maps { Vec::with_capacity(dataset.test.len() * size * size) } else { Vec::new() };
    let nb = loader.num_batches();
    for (k, b) in loader.iter().enumerate() {
        let b = b?;
        let (maps, sc) = model.predict(&b.images)?;
        let maps: Vec<f32> = maps.flatten_all()?.to_vec1()?;
        for (j, &i) in b.indices.iter().enumerate() {
            let s = &dataset.test[i];
            scores[i] = sc[j];
            image_scores.push(sc[j], s.label == Label::Anomalous)?;
            let m = &maps[j * size * size..(j + 1) * size * size];
            let mask = &b.masks[j * size * size..(j + 1) * size * size];
            border.push(m, s.label == Label::Anomalous);
            if s.label == Label::Normal || s.mask.is_some() {
                pixel.push_map(m, mask)?;
                map_of[i] = Some(pro_maps.len());
                pro_maps.push((m.to_vec(), mask.to_vec()));
            }
        }
        if save_maps {
            all_maps.extend_from_slice(&maps);
        }
        write!(log, "\rtesting [{}/{nb}]", k + 1)?;
        log.flush()?;
    }
    writeln!(log)?;
    let image = image_scores.into_sorted();
    let f1 = image.f1_max()?;
    let has_masks = pro_maps.iter().any(|(_, m)| m.iter().any(|&v| v != 0));
    let (pixel_auroc, pixel_f1, pro) = if has_masks {
        let p = pixel.into_sorted();
        let views: Vec<AnomalyMap> =
            pro_maps.iter().map(|(s, m)| AnomalyMap { scores: s, mask: m, width: size, height: size }).collect();
        (Some(p.auroc()?), Some(p.f1_max()?.f1), Some(aupro(&views, DEFAULT_FPR_LIMIT)?))
    } else {
        (None, None, None)
    };
    let scored: Vec<ScoredImage> = dataset
        .test
        .iter()
        .zip(&scores)
        .zip(&map_of)
        .map(|((s, &score), m)| {
            let (map, mask) = match m {
                Some(k) if has_masks => (pro_maps[*k].0.as_slice(), pro_maps[*k].1.as_slice()),
                _ => (&[][..], &[][..]),
            };
            ScoredImage { defect_type: &s.defect_type, anomalous: s.label == Label::Anomalous, score, map, mask }
        })
        .collect();
    let per_defect_type = metrics_by_defect_type(&scored, size, size)?;
    let metrics = TestMetrics {
        image_auroc: image.auroc()?,
        pixel_auroc,
        aupro: pro,
        f1_max: f1.f1,
        f1_threshold: f1.threshold,
        pixel_f1_max: pixel_f1,
        test_images: dataset.test.len(),
        seconds: t0.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        per_defect_type,
        border_maxima: Some(border.finish()),
    };
    let mut csv = String::from("path,label,defect_type,score\n");
    for (s, sc) in dataset.test.iter().zip(&scores) {
        let label = if s.label == Label::Anomalous { 1 } else { 0 };
        csv.push_str(&format!("{},{label},{},{sc}\n", csv_field(&s.image.to_string_lossy()), csv_field(&s.defect_type)));
    }
    write_atomic(&run.path("scores.csv"), csv.as_bytes())?;
    if save_maps {
        write_npy(&run.path("maps.npy"), &[dataset.test.len(), size, size], &all_maps)?;
    }
    // Last: metrics.json is what marks a run as tested.
    write_atomic(&run.path("metrics.json"), serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    Ok(metrics)
}

/// A distinct output name per input: the file stem, prefixed by the parent
/// directory when stems repeat (`test/hole/000.png` and `test/stain/000.png`
/// become `hole_000` and `stain_000`), then by the position if still equal.
pub fn output_names(images: &[PathBuf]) -> Vec<String> {
    let stem = |p: &PathBuf| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let parent = |p: &PathBuf| p.parent().and_then(|d| d.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let count = |names: &[String], n: &String| names.iter().filter(|m| *m == n).count();
    let stems: Vec<String> = images.iter().map(stem).collect();
    let mut names: Vec<String> = images
        .iter()
        .zip(&stems)
        .map(|(p, s)| if count(&stems, s) > 1 { format!("{}_{s}", parent(p)) } else { s.clone() })
        .collect();
    let snapshot = names.clone();
    for (i, n) in names.iter_mut().enumerate() {
        if count(&snapshot, n) > 1 {
            *n = format!("{i}_{n}");
        }
    }
    names
}

/// Jet colour map for v in [0, 1].
fn jet(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    let f = |x: f32| (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0);
    [f(3.0), f(2.0), f(1.0)]
}

/// Heat-map overlays and scores for new images. Map values are shown on the
/// detector's fixed scale ([`Detector::heat_scale`]) so that colours mean
/// the same in every picture, else min-max per image.
pub fn predict(model: &dyn Detector, run: &RunDir, images: &[PathBuf], out: &Path, log: &mut dyn Write) -> Result<Vec<(PathBuf, f32)>> {
    let img_cfg = model.image_config();
    let size = img_cfg.height as usize;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let threshold = std::fs::read_to_string(run.path("metrics.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<TestMetrics>(&t).ok())
        .map(|m| m.f1_threshold);
    let fixed_scale = model.heat_scale().filter(|s| *s > 0.0);
    let plain = multiad_data::ImageConfig { normalization: multiad_data::Normalization::None, ..img_cfg };
    let names = output_names(images);
    let mut results = Vec::new();
    let mut csv = String::from("path,score,anomalous\n");
    for (p, name) in images.iter().zip(&names) {
        let (x, _) = load_image(p, &img_cfg)?;
        let (rgb, _) = load_image(p, &plain)?;
        let x = Tensor::from_vec(x, (1, 3, size, size), &Device::Cpu)?;
        let (map, sc) = model.predict(&x)?;
        let map: Vec<f32> = map.flatten_all()?.to_vec1()?;
        let (lo, scale) = match fixed_scale {
            Some(s) => (0.0, s),
            None => {
                let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (lo, (hi - lo).max(f32::EPSILON))
            }
        };
        let mut img = image::RgbImage::new(size as u32, size as u32);
        for (i, px) in img.pixels_mut().enumerate() {
            let c = jet((map[i] - lo) / scale);
            for ch in 0..3 {
                px.0[ch] = ((0.5 * rgb[ch * size * size + i] + 0.5 * c[ch]) * 255.0).round() as u8;
            }
        }
        let dest = out.join(format!("{name}_heatmap.png"));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).with_context(|| format!("encoding {}", dest.display()))?;
        write_atomic(&dest, png.get_ref())?;
        let verdict = threshold.map(|t| if sc[0] >= t { "1" } else { "0" }).unwrap_or("");
        csv.push_str(&format!("{},{},{verdict}\n", csv_field(&p.to_string_lossy()), sc[0]));
        writeln!(log, "{}: score {:.4} -> {}", p.display(), sc[0], dest.display())?;
        results.push((p.clone(), sc[0]));
    }
    write_atomic(&out.join("scores.csv"), csv.as_bytes())?;
    Ok(results)
}

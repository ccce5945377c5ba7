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

/// A GPU running out of memory as what to do (a smaller `batch_size`);
/// other errors as they are. Training and inference both go through it.
pub(crate) fn out_of_memory(e: anyhow::Error, batch_size: usize) -> anyhow::Error {
    match e.downcast_ref::<candle_core::Error>().and_then(|c| multiad_nn::device::out_of_memory_advice(c, batch_size)) {
        Some(advice) => anyhow::anyhow!(advice),
        None => e,
    }
}

/// training.json, written last by a fit: training finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    #[serde(default)]
    pub method: Option<String>,
    pub train_images: usize,
    pub seconds: f64,
    /// Peak resident memory of the fitting process (Linux), MiB.
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// The method's own fields ([`Detector::training_details`]).
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// Fits `det` on the run's training images, saves it, and writes
/// training.json.
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
    // The resolved config, as TensorBoard's text (a YAML code block).
    if let (false, Ok(yaml)) = (opts.resume, std::fs::read_to_string(run.path("config.yaml"))) {
        let data = std::fs::read_to_string(run.path("data.yaml")).unwrap_or_default();
        let mut ev = crate::events::RunEvents::open(run, "config");
        ev.text("config", 0, &format!("```yaml\n{yaml}\n```"));
        if !data.is_empty() {
            ev.text("data", 0, &format!("```yaml\n{data}\n```"));
        }
    }
    if det.fit(run, &dataset.train, opts, log)? == FitOutcome::Stopped {
        return Ok(FitOutcome::Stopped);
    }
    det.save(run)?;
    let rec = TrainingRecord {
        method: Some(det.method().to_string()),
        train_images: dataset.train.len(),
        seconds: t0.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        details: det.training_details(),
    };
    write_atomic(&run.path("training.json"), serde_json::to_string_pretty(&rec)?.as_bytes())?;
    writeln!(log, "trained in {}", crate::epochs::fmt_secs(rec.seconds))?;
    Ok(FitOutcome::Finished)
}

/// Loads what [`train_run`] saved into `det`, a fresh detector built from
/// the run's config; a run whose training has not finished is refused.
pub fn load_fitted(det: &mut dyn Detector, run: &RunDir) -> Result<()> {
    if !run.is_trained() {
        bail!("{}: training has not finished (no training.json); run `multiad train --resume --out {}`", run.dir.display(), run.dir.display());
    }
    det.load(run)
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
    /// The map value that reaches the pixel-level F1-max: the threshold of
    /// the predicted masks in result panels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixel_f1_threshold: Option<f32>,
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

/// What `multiad test` writes besides metrics.json and scores.csv.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestOptions {
    /// maps.npy (N x H x W float32, rows in scores.csv order).
    pub save_maps: bool,
    /// `images/<name>.png` (a panel per test image at its resolution) and
    /// `curves/` (ROC, PRO, score histogram as PNG and SVG).
    pub save_images: bool,
    /// The predicted masks' map threshold; default: the pixel-level
    /// F1-optimal one, else (no masks) the image-level one.
    pub threshold: Option<f32>,
}

/// The map threshold of predicted masks (see [`TestOptions::threshold`]).
pub fn mask_threshold(m: &TestMetrics, asked: Option<f32>) -> f32 {
    asked.or(m.pixel_f1_threshold).unwrap_or(m.f1_threshold)
}

/// Runs the test split through a fitted detector; writes metrics.json,
/// scores.csv, TensorBoard events (metrics, a few panels), and what `opts`
/// asks for.
pub fn test(model: &dyn Detector, run: &RunDir, opts: &TestOptions, log: &mut dyn Write) -> Result<TestMetrics> {
    let save_maps = opts.save_maps;
    let t0 = Instant::now();
    let dataset = run.data()?.load()?;
    let img_cfg = model.image_config();
    let size = img_cfg.height as usize;
    if img_cfg.width != img_cfg.height {
        bail!("{}: test needs square inputs, the method asks for {}x{}", run.dir.display(), img_cfg.width, img_cfg.height);
    }
    check_all(&dataset.test, &img_cfg).with_context(|| format!("{}: the test images do not all load; fix or remove them", dataset.root.display()))?;
    let loader = BatchLoader::new(dataset.test.clone(), img_cfg, model.batch_size()).on_device(&model.device());
    let mut image_scores = BinaryScores::new();
    let mut pixel = BinaryScores::new();
    let mut scores = vec![0f32; dataset.test.len()];
    let mut pro_maps: Vec<(Vec<f32>, Vec<u8>)> = Vec::new();
    // Which of pro_maps belongs to each test image (none: no ground truth).
    let mut map_of: Vec<Option<usize>> = vec![None; dataset.test.len()];
    let mut border = BorderCounter::new(size);
    let keep_all = save_maps || opts.save_images;
    let mut all_maps: Vec<f32> = if keep_all { Vec::with_capacity(dataset.test.len() * size * size) } else { Vec::new() };
    // The maps of the examples shown in TensorBoard (all are kept when asked for).
    let examples = crate::results::example_images(&dataset.test);
    let mut example_maps: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
    let nb = loader.num_batches();
    for (k, b) in loader.iter().enumerate() {
        let b = b?;
        let (maps, sc) = model.predict(&b.images).map_err(|e| out_of_memory(e, model.batch_size()))?;
        let maps: Vec<f32> = maps.flatten_all()?.to_vec1()?;
        for (j, &i) in b.indices.iter().enumerate() {
            let s = &dataset.test[i];
            scores[i] = sc[j];
            image_scores.push(sc[j], s.label == Label::Anomalous)?;
            let m = &maps[j * size * size..(j + 1) * size * size];
            let mask = &b.masks[j * size * size..(j + 1) * size * size];
            border.push(m, s.label == Label::Anomalous);
            if !keep_all && examples.contains(&i) {
                example_maps.insert(i, m.to_vec());
            }
            if s.label == Label::Normal || s.mask.is_some() {
                pixel.push_map(m, mask)?;
                map_of[i] = Some(pro_maps.len());
                pro_maps.push((m.to_vec(), mask.to_vec()));
            }
        }
        if keep_all {
            // Rows in test order: the loader keeps it (no shuffling).
            all_maps.extend_from_slice(&maps);
        }
        write!(log, "\rtesting [{}/{nb}]", k + 1)?;
        log.flush()?;
    }
    writeln!(log)?;
    let image = image_scores.into_sorted();
    let f1 = image.f1_max()?;
    let has_masks = pro_maps.iter().any(|(_, m)| m.iter().any(|&v| v != 0));
    let pixel_sorted = has_masks.then(|| pixel.into_sorted());
    let (pixel_auroc, pixel_f1, pro) = match &pixel_sorted {
        Some(p) => {
            let views: Vec<AnomalyMap> = pro_maps.iter().map(|(s, m)| AnomalyMap { scores: s, mask: m, width: size, height: size }).collect();
            (Some(p.auroc()?), Some(p.f1_max()?), Some(aupro(&views, DEFAULT_FPR_LIMIT)?))
        }
        None => (None, None, None),
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
        pixel_f1_max: pixel_f1.map(|f| f.f1),
        pixel_f1_threshold: pixel_f1.map(|f| f.threshold),
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
    let threshold = mask_threshold(&metrics, opts.threshold);
    let map_of_test = |i: usize| -> Option<&[f32]> {
        if keep_all {
            Some(&all_maps[i * size * size..(i + 1) * size * size])
        } else {
            example_maps.get(&i).map(|v| v.as_slice())
        }
    };
    let panel_of = |i: usize| -> Result<image::RgbImage> {
        let s = &dataset.test[i];
        crate::results::render_panel(&crate::results::PanelOf {
            image: &s.image,
            mask: Some(s.mask.as_deref()),
            map: map_of_test(i).context("a test map was not kept")?,
            map_side: size,
            fixed_scale: model.heat_scale(),
            threshold: Some(threshold),
            score: scores[i],
            mask_threshold: img_cfg.mask_threshold,
        })
    };
    let names = output_names(&dataset.test.iter().map(|s| s.image.clone()).collect::<Vec<_>>());
    // The examples' thumbnails for TensorBoard, taken from the full panels
    // when those are drawn anyway.
    let mut thumbs: BTreeMap<usize, image::RgbImage> = BTreeMap::new();
    if opts.save_images {
        let dir = run.path("images");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (i, name) in names.iter().enumerate() {
            let panel = panel_of(i)?;
            if examples.contains(&i) {
                thumbs.insert(i, crate::results::thumbnail(&panel, 256));
            }
            let png = crate::results::encode_png(&panel)?;
            write_atomic(&dir.join(format!("{name}.png")), &png)?;
            write!(log, "\rpanels [{}/{}]", i + 1, names.len())?;
        }
        writeln!(log)?;
        write_curves(run, &image, pixel_sorted.as_ref(), &pro_maps, size, &metrics, &scores, &dataset.test)?;
        writeln!(log, "panels in {}, curves in {}", dir.display(), run.path("curves").display())?;
    }
    // TensorBoard: the metrics at the step training ended, and the examples.
    let step = crate::history::read_history(run).map(|h| h.len() as i64).unwrap_or(0);
    let mut ev = crate::events::RunEvents::open(run, "test");
    for (tag, v) in [
        ("test/image_auroc", Some(metrics.image_auroc)),
        ("test/pixel_auroc", metrics.pixel_auroc),
        ("test/aupro", metrics.aupro),
        ("test/f1_max", Some(metrics.f1_max)),
        ("test/pixel_f1_max", metrics.pixel_f1_max),
    ] {
        if let Some(v) = v {
            ev.scalar(tag, step, v);
        }
    }
    for &i in &examples {
        let thumb = match thumbs.remove(&i) {
            Some(t) => t,
            None => crate::results::thumbnail(&panel_of(i)?, 256),
        };
        let png = crate::results::encode_png(&thumb)?;
        ev.image_png(&format!("panels/{}", names[i]), step, &png, thumb.width(), thumb.height());
    }
    // Last: metrics.json is what marks a run as tested.
    write_atomic(&run.path("metrics.json"), serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    Ok(metrics)
}

/// ROC (image, pixel), PRO and score-histogram figures into `<run>/curves/`.
#[allow(clippy::too_many_arguments)]
fn write_curves(
    run: &RunDir,
    image: &multiad_metrics::SortedScores,
    pixel: Option<&multiad_metrics::SortedScores>,
    pro_maps: &[(Vec<f32>, Vec<u8>)],
    size: usize,
    m: &TestMetrics,
    scores: &[f32],
    test: &[multiad_data::Sample],
) -> Result<()> {
    use multiad_report::curves::{pro, roc, score_histogram, Curve};
    let dir = run.path("curves");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let r = image.roc_curve()?;
    let image_curve = Curve { x: r.fpr, y: r.tpr, area: m.image_auroc };
    let pixel_curve = match pixel {
        Some(p) => {
            let r = p.roc_curve()?;
            Some(Curve { x: r.fpr, y: r.tpr, area: m.pixel_auroc.unwrap_or(0.0) })
        }
        None => None,
    };
    crate::results::write_figure(&dir, "roc", &roc(&image_curve, pixel_curve.as_ref())?)?;
    if let Some(a) = m.aupro {
        let views: Vec<AnomalyMap> = pro_maps.iter().map(|(s, k)| AnomalyMap { scores: s, mask: k, width: size, height: size }).collect();
        let c = multiad_metrics::pro_curve(&views)?;
        crate::results::write_figure(&dir, "pro", &pro(&Curve { x: c.fpr, y: c.pro, area: a }, DEFAULT_FPR_LIMIT)?)?;
    }
    let (mut normal, mut anomalous) = (Vec::new(), Vec::new());
    for (s, &v) in test.iter().zip(scores) {
        if s.label == Label::Anomalous {
            anomalous.push(v)
        } else {
            normal.push(v)
        }
    }
    // Image scores: the line is the image-level F1-optimal threshold.
    crate::results::write_figure(&dir, "score_histogram", &score_histogram(&normal, &anomalous, m.f1_threshold)?)
}

/// A distinct output name per input: the file stem, prefixed by the parent
/// directory when stems repeat (`test/hole/000.png` and `test/stain/000.png`
/// become `hole_000` and `stain_000`), then by the position if still equal.
pub fn output_names(images: &[PathBuf]) -> Vec<String> {
    let stem = |p: &PathBuf| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let parent = |p: &PathBuf| p.parent().and_then(|d| d.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let count = |names: &[String], n: &String| names.iter().filter(|m| *m == n).count();
    let stems: Vec<String> = images.iter().map(stem).collect();
    let mut names: Vec<String> = images.iter().zip(&stems).map(|(p, s)| if count(&stems, s) > 1 { format!("{}_{s}", parent(p)) } else { s.clone() }).collect();
    let snapshot = names.clone();
    for (i, n) in names.iter_mut().enumerate() {
        if count(&snapshot, n) > 1 {
            *n = format!("{i}_{n}");
        }
    }
    names
}

/// Heat-map overlays (`<name>_heatmap.png`, the model's resolution), panels
/// (`<name>_panel.png`: image | heat map | predicted contour, the image's
/// resolution) and scores for new images. Map values are shown on the
/// detector's fixed scale ([`Detector::heat_scale`]) so that colours mean
/// the same in every picture, else min-max per image. The contour's
/// threshold is `mask_threshold`, else the tested run's ([`mask_threshold`]);
/// an untested run without one gets panels without a contour.
pub fn predict(
    model: &dyn Detector,
    run: &RunDir,
    images: &[PathBuf],
    out: &Path,
    mask_threshold_asked: Option<f32>,
    log: &mut dyn Write,
) -> Result<Vec<(PathBuf, f32)>> {
    let img_cfg = model.image_config();
    let size = img_cfg.height as usize;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tested = std::fs::read_to_string(run.path("metrics.json")).ok().and_then(|t| serde_json::from_str::<TestMetrics>(&t).ok());
    let threshold = tested.as_ref().map(|m| m.f1_threshold);
    let contour = mask_threshold_asked.or(tested.as_ref().map(|m| mask_threshold(m, None)));
    if contour.is_none() {
        writeln!(log, "note: {} is not tested and no --threshold was given: panels show no predicted mask", run.dir.display())?;
    }
    let fixed_scale = model.heat_scale().filter(|s| *s > 0.0);
    let plain = multiad_data::ImageConfig { normalization: multiad_data::Normalization::None, ..img_cfg };
    let names = output_names(images);
    let mut results = Vec::new();
    let mut csv = String::from("path,score,anomalous\n");
    for (p, name) in images.iter().zip(&names) {
        let (x, _) = load_image(p, &img_cfg)?;
        let (rgb, _) = load_image(p, &plain)?;
        let x = Tensor::from_vec(x, (1, 3, size, size), &Device::Cpu)?.to_device(&model.device())?;
        let (map, sc) = model.predict(&x)?;
        let map: Vec<f32> = map.flatten_all()?.to_vec1()?;
        let heat = multiad_report::heat::HeatScale::for_map(&map, fixed_scale);
        let mut img = image::RgbImage::new(size as u32, size as u32);
        for (i, px) in img.pixels_mut().enumerate() {
            let c = heat.colour(map[i]);
            for ch in 0..3 {
                px.0[ch] = ((0.5 * rgb[ch * size * size + i] + 0.5 * c[ch]) * 255.0).round() as u8;
            }
        }
        let dest = out.join(format!("{name}_heatmap.png"));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).with_context(|| format!("encoding {}", dest.display()))?;
        write_atomic(&dest, png.get_ref())?;
        let panel = crate::results::render_panel(&crate::results::PanelOf {
            image: p,
            mask: None,
            map: &map,
            map_side: size,
            fixed_scale,
            threshold: contour,
            score: sc[0],
            mask_threshold: img_cfg.mask_threshold,
        })?;
        write_atomic(&out.join(format!("{name}_panel.png")), &crate::results::encode_png(&panel)?)?;
        let verdict = threshold.map(|t| if sc[0] >= t { "1" } else { "0" }).unwrap_or("");
        csv.push_str(&format!("{},{},{verdict}\n", csv_field(&p.to_string_lossy()), sc[0]));
        writeln!(log, "{}: score {:.4} -> {}", p.display(), sc[0], dest.display())?;
        results.push((p.clone(), sc[0]));
    }
    write_atomic(&out.join("scores.csv"), csv.as_bytes())?;
    Ok(results)
}

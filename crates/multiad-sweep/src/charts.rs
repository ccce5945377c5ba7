//! Charts with Plotters, each as PNG and SVG under `<sweep>/charts/`:
//! grouped bars per metric, loss curves per cell, image-level ROC curves per
//! data set, and a grid of heat-map overlays per data set.
//!
//! PNG text needs a TrueType font (`multiad_report::draw`: `$MULTIAD_FONT`,
//! else DejaVu or Liberation); without one, PNGs are drawn without text.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use multiad_detector::write_atomic;
use multiad_report::curves::{line_chart, thin, Curve};
use multiad_report::draw::{err, framed_chart, legend, render_both, PngDraw, SvgDraw};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plan::{Plan, SweepKind};
use crate::records::CellRecord;

/// Draws `f` and `g` (the same drawing for each backend) into
/// `<stem>.png` and `<stem>.svg`, each written atomically.
fn both(dir: &Path, stem: &str, size: (u32, u32), out: &mut Vec<PathBuf>, f: PngDraw, g: SvgDraw) -> Result<()> {
    let fig = render_both(size, f, g)?;
    let (png, svg) = (dir.join(format!("{stem}.png")), dir.join(format!("{stem}.svg")));
    write_atomic(&png, &fig.png)?;
    write_atomic(&svg, fig.svg.as_bytes())?;
    out.push(png);
    out.push(svg);
    Ok(())
}

fn safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// The x-axis group of a record: its study (ablation) or method (benchmark).
fn group_of(kind: SweepKind, r: &CellRecord) -> String {
    match (kind, r.study) {
        (SweepKind::Ablation, Some(s)) => format!("study {s}"),
        _ => r.method.clone(),
    }
}

fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: bool,
    title: &str,
    groups: &[String],
    datasets: &[String],
    value: &dyn Fn(&str, &str) -> Option<f64>,
) -> Result<()> {
    let n = groups.len().max(1);
    let mut b = ChartBuilder::on(root);
    b.margin(10).x_label_area_size(if text { 40 } else { 5 }).y_label_area_size(if text { 50 } else { 5 });
    if text {
        b.caption(title, ("sans-serif", 20));
    }
    // Group g spans [g - 0.5, g + 0.5]: integer ticks fall on group centres.
    let mut chart = b.build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..1.0f64).map_err(err)?;
    let labels: Vec<String> = groups.to_vec();
    let label_of = |x: &f64| {
        let g = x.round();
        if (x - g).abs() < 1e-6 && g >= 0.0 {
            labels.get(g as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh();
    if text {
        mesh.x_labels(2 * n + 1).x_label_formatter(&label_of).y_desc("AUROC");
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;
    let w = 0.8 / datasets.len().max(1) as f64;
    for (k, d) in datasets.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let rects: Vec<Rectangle<(f64, f64)>> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, grp)| {
                let v = value(grp, d)?;
                let x0 = g as f64 - 0.4 + k as f64 * w;
                Some(Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v)], color.filled()))
            })
            .collect();
        let s = chart.draw_series(rects).map_err(err)?;
        if text {
            s.label(d.clone()).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
    }
    legend(&mut chart, text, SeriesLabelPosition::MiddleRight)
}

fn losses<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: bool, r: &CellRecord) -> Result<()> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = vec![
        ("distillation L_G", r.history.iter().map(|e| (e.epoch as f64, e.loss_g)).collect()),
        ("discriminator L_D", r.history.iter().filter_map(|e| e.loss_d.map(|v| (e.epoch as f64, v))).collect()),
        ("adversarial L_adv", r.history.iter().filter_map(|e| e.loss_adv.map(|v| (e.epoch as f64, v))).collect()),
    ];
    let all: Vec<f64> = series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).filter(|v| *v > 0.0).collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).min(1.0) / 2.0;
    let hi = all.iter().cloned().fold(0f64, f64::max).max(1.0) * 2.0;
    let epochs = r.history.len().max(2) as f64;
    let name = r.study.map(|s| format!("study {s}")).unwrap_or_else(|| r.method.clone());
    let title = format!("{} {name}: losses per epoch", r.dataset);
    let mut chart = framed_chart(root, text, &title, ("epoch", "loss (log scale)"), 1f64..epochs, (lo..hi).log_scale())?;
    for (k, (name, pts)) in series.into_iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let color = Palette99::pick(k).to_rgba();
        let s = chart.draw_series(LineSeries::new(pts.into_iter().filter(|p| p.1 > 0.0), color.stroke_width(2))).map_err(err)?;
        if text {
            s.label(name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        }
    }
    legend(&mut chart, text, SeriesLabelPosition::MiddleRight)
}

fn rocs<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: bool, kind: SweepKind, dataset: &str, rs: &[&CellRecord]) -> Result<()> {
    let mut series = Vec::new();
    for r in rs {
        let mut acc = multiad_metrics::BinaryScores::new();
        for &(label, score) in &r.scores {
            acc.push(score, label)?;
        }
        let Ok(roc) = acc.into_sorted().roc_curve() else { continue }; // one class only: no curve
        let curve = Curve { x: roc.fpr, y: roc.tpr, area: r.metrics.image_auroc };
        series.push((format!("{} ({:.3})", group_of(kind, r), curve.area), thin(&curve, 2000)));
    }
    let title = format!("{dataset}: image-level ROC");
    line_chart(root, text, &title, ("false positive rate", "true positive rate"), 1.0, &series, true)
}

const TILE: u32 = 128;

/// RGB bytes of an image file resized to the tile, with the mask (if any)
/// tinted red: the ground-truth row of the grid.
fn tile(path: &Path, mask: Option<&Path>) -> Result<Vec<u8>> {
    let img = image::open(path).map_err(|e| anyhow!("{}: {e}", path.display()))?.to_rgb8();
    let mut img = image::imageops::resize(&img, TILE, TILE, image::imageops::FilterType::Triangle);
    if let Some(m) = mask {
        let m = image::open(m).map_err(|e| anyhow!("{}: {e}", m.display()))?.to_luma8();
        let m = image::imageops::resize(&m, TILE, TILE, image::imageops::FilterType::Nearest);
        for (p, q) in img.pixels_mut().zip(m.pixels()) {
            if q.0[0] > 127 {
                p.0 = [255, (p.0[1] as u16 / 3) as u8, (p.0[2] as u16 / 3) as u8];
            }
        }
    }
    Ok(img.into_raw())
}

fn heat_grid<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: bool, kind: SweepKind, rs: &[&CellRecord]) -> Result<()> {
    let label_w = if text { 110 } else { 0 };
    let Some(first) = rs.first() else { return Ok(()) };
    let mut rows: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    rows.push(("input + mask".into(), first.heatmaps.iter().map(|h| tile(&h.image, h.mask.as_deref())).collect::<Result<_>>()?));
    for r in rs {
        let tiles = r.heatmaps.iter().map(|h| tile(&h.overlay, None)).collect::<Result<_>>()?;
        rows.push((group_of(kind, r), tiles));
    }
    for (i, (name, tiles)) in rows.iter().enumerate() {
        let y = (i as u32 * (TILE + 4)) as i32;
        if text {
            root.draw(&Text::new(name.clone(), (4, y + TILE as i32 / 2), ("sans-serif", 14))).map_err(err)?;
        }
        for (j, t) in tiles.iter().enumerate() {
            let x = label_w + (j as u32 * (TILE + 4)) as i32;
            let el = BitMapElement::with_owned_buffer((x, y), (TILE, TILE), t.clone()).ok_or_else(|| anyhow!("bad tile buffer"))?;
            root.draw(&el).map_err(err)?;
        }
    }
    Ok(())
}

/// Writes every chart of the sweep; returns the paths.
pub fn write_all(plan: &Plan, records: &[CellRecord]) -> Result<Vec<PathBuf>> {
    let dir = plan.dir.join("charts");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    if records.is_empty() {
        return Ok(out);
    }
    let mut groups: Vec<String> = Vec::new();
    let mut datasets: Vec<String> = Vec::new();
    for r in records {
        let g = group_of(plan.kind, r);
        if !groups.contains(&g) {
            groups.push(g);
        }
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    for (metric, title) in [("image_auroc", "Image-level AUROC"), ("pixel_auroc", "Pixel-level AUROC")] {
        let value = |g: &str, d: &str| {
            records.iter().find(|r| r.dataset == d && group_of(plan.kind, r) == g).and_then(|r| match metric {
                "image_auroc" => Some(r.metrics.image_auroc),
                _ => r.metrics.pixel_auroc,
            })
        };
        let stem = format!("bars_{metric}");
        both(&dir, &stem, (900, 500), &mut out, &|a, t| bars(a, t, title, &groups, &datasets, &value), &|a, t| bars(a, t, title, &groups, &datasets, &value))?;
    }
    // Loss curves for methods that train in epochs (PaDiM and PatchCore have none).
    for r in records.iter().filter(|r| !r.history.is_empty()) {
        let stem = format!("loss_{}_{}", safe(&r.dataset), safe(&group_of(plan.kind, r)));
        both(&dir, &stem, (700, 450), &mut out, &|a, t| losses(a, t, r), &|a, t| losses(a, t, r))?;
    }
    for d in &datasets {
        let rs: Vec<&CellRecord> = records.iter().filter(|r| &r.dataset == d).collect();
        let stem = format!("roc_{}", safe(d));
        both(&dir, &stem, (600, 600), &mut out, &|a, t| rocs(a, t, plan.kind, d, &rs), &|a, t| rocs(a, t, plan.kind, d, &rs))?;
        let cols = rs.first().map(|r| r.heatmaps.len()).unwrap_or(0) as u32;
        let size = (110 + cols * (TILE + 4), (rs.len() as u32 + 1) * (TILE + 4));
        let stem = format!("heatmaps_{}", safe(d));
        both(&dir, &stem, size, &mut out, &|a, t| heat_grid(a, t, plan.kind, &rs), &|a, t| heat_grid(a, t, plan.kind, &rs))?;
    }
    Ok(out)
}

//! Result pictures of `multiad test --save-images` and `multiad predict`:
//! a panel per image at its own resolution (image | ground truth | heat map
//! | predicted contour), the run's ROC and PRO curves and score histograms
//! (`multiad-report` draws them; this writes them, atomically).

use std::path::Path;

use anyhow::{Context, Result};
use multiad_data::{decode, Label, Sample};
use multiad_report::heat::HeatScale;
use multiad_report::panel::{panel, GroundTruth, PanelInput};

use crate::run_dir::write_atomic;

/// Indices of a few test images to show: two normal and two anomalous,
/// evenly spaced in path order (the same for every method on a data set).
pub fn example_images(test: &[Sample]) -> Vec<usize> {
    let mut picks = Vec::new();
    for label in [Label::Normal, Label::Anomalous] {
        let mut idx: Vec<usize> = (0..test.len()).filter(|&i| test[i].label == label).collect();
        idx.sort_by(|&a, &b| test[a].image.cmp(&test[b].image));
        for k in 1..=2 {
            if let Some(&i) = idx.get(idx.len() * k / 3) {
                if !picks.contains(&i) {
                    picks.push(i);
                }
            }
        }
    }
    picks
}

/// What a panel shows of one image.
pub struct PanelOf<'a> {
    pub image: &'a Path,
    /// `None`: no ground-truth column (new images); `Some(None)`: normal.
    pub mask: Option<Option<&'a Path>>,
    pub map: &'a [f32],
    pub map_side: usize,
    pub fixed_scale: Option<f32>,
    pub threshold: Option<f32>,
    pub score: f32,
    /// The data set's mask threshold (mask pixels above it are anomalous).
    pub mask_threshold: u8,
}

/// The panel as an RGB image, the image and mask read from disk.
pub fn render_panel(p: &PanelOf) -> Result<image::RgbImage> {
    let img = decode(p.image)?.to_rgb8();
    let mask_img;
    let gt = match p.mask {
        None => GroundTruth::Unknown,
        Some(None) => GroundTruth::Normal,
        Some(Some(m)) => {
            let mut g = decode(m)?.to_luma8();
            for px in g.pixels_mut() {
                px.0[0] = if px.0[0] > p.mask_threshold { 255 } else { 0 };
            }
            mask_img = g;
            GroundTruth::Mask(&mask_img)
        }
    };
    let input = PanelInput {
        image: &img,
        ground_truth: gt,
        map: p.map,
        map_size: (p.map_side, p.map_side),
        heat: HeatScale::for_map(p.map, p.fixed_scale),
        threshold: p.threshold,
        score: p.score,
    };
    panel(&input).with_context(|| format!("drawing the panel of {}", p.image.display()))
}

pub fn encode_png(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).context("encoding a PNG")?;
    Ok(out.into_inner())
}

/// A panel scaled down to at most `max_height` pixels (for TensorBoard).
pub fn thumbnail(img: &image::RgbImage, max_height: u32) -> image::RgbImage {
    if img.height() <= max_height {
        return img.clone();
    }
    let w = (img.width() as u64 * max_height as u64 / img.height() as u64).max(1) as u32;
    image::imageops::resize(img, w, max_height, image::imageops::FilterType::Triangle)
}

/// Writes a figure as `<dir>/<stem>.png` and `.svg`.
pub fn write_figure(dir: &Path, stem: &str, f: &multiad_report::Figure) -> Result<()> {
    write_atomic(&dir.join(format!("{stem}.png")), &f.png)?;
    write_atomic(&dir.join(format!("{stem}.svg")), f.svg.as_bytes())
}

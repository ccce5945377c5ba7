//! One picture per image, at the image's own resolution, as anomalib draws
//! its results: image | ground truth | heat map | predicted mask (the
//! thresholded map's contour drawn over the image).

use anyhow::{bail, Result};
use image::{GrayImage, RgbImage};
use plotters::prelude::*;

use crate::draw::{err, png_text_available};
use crate::heat::HeatScale;

/// The ground-truth column of a panel.
#[derive(Debug, Clone, Copy)]
pub enum GroundTruth<'a> {
    /// No column (`multiad predict`: new images have no labels).
    Unknown,
    /// A normal test image: an all-black mask.
    Normal,
    /// The mask at the image's resolution (non-zero = anomalous).
    Mask(&'a GrayImage),
}

pub struct PanelInput<'a> {
    /// The image as it is on disk (any size).
    pub image: &'a RgbImage,
    pub ground_truth: GroundTruth<'a>,
    /// The anomaly map at the model's resolution, row-major, `map_size` = (w, h).
    pub map: &'a [f32],
    pub map_size: (usize, usize),
    pub heat: HeatScale,
    /// Map values at or above it are predicted anomalous; `None`: no
    /// predicted-mask column.
    pub threshold: Option<f32>,
    pub score: f32,
}

/// Space between tiles and the height of the title strip, in pixels.
const GAP: u32 = 8;
const TITLE: u32 = 28;

/// Bilinear resampling of a (w, h) map to (W, H), pixel centres aligned (as
/// `align_corners = False`).
pub fn upsample(map: &[f32], (w, h): (usize, usize), (ow, oh): (u32, u32)) -> Vec<f32> {
    let (ow, oh) = (ow as usize, oh as usize);
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let s = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).clamp(0.0, (n_in - 1) as f32);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, s - i0 as f32)
            })
            .collect()
    };
    let xs = axis(w, ow);
    let ys = axis(h, oh);
    let mut out = Vec::with_capacity(ow * oh);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Pixels on the edge of `mask` (inside it, with a 4-neighbour outside it or
/// on the image's edge), thickened to `thickness` pixels.
fn contour(mask: &[bool], w: usize, h: usize, thickness: usize) -> Vec<bool> {
    let mut edge = vec![false; w * h];
    for y in 0..h {
        for x in 0..w {
            if !mask[y * w + x] {
                continue;
            }
            let out = |dx: isize, dy: isize| {
                let (nx, ny) = (x as isize + dx, y as isize + dy);
                nx < 0 || ny < 0 || nx >= w as isize || ny >= h as isize || !mask[ny as usize * w + nx as usize]
            };
            if out(-1, 0) || out(1, 0) || out(0, -1) || out(0, 1) {
                edge[y * w + x] = true;
            }
        }
    }
    if thickness <= 1 {
        return edge;
    }
    let r = (thickness - 1) as isize;
    let mut thick = edge.clone();
    for y in 0..h {
        for x in 0..w {
            if !edge[y * w + x] {
                continue;
            }
            for dy in -r..=r {
                for dx in -r..=r {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    if nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h {
                        thick[ny as usize * w + nx as usize] = true;
                    }
                }
            }
        }
    }
    thick
}

/// The panel as an RGB image: tiles of the image's size side by side, a
/// title strip above them when a font is available.
pub fn panel(p: &PanelInput) -> Result<RgbImage> {
    let (w, h) = p.image.dimensions();
    if w == 0 || h == 0 {
        bail!("an empty image");
    }
    if p.map.len() != p.map_size.0 * p.map_size.1 || p.map.is_empty() {
        bail!("the map has {} values, not {}x{}", p.map.len(), p.map_size.0, p.map_size.1);
    }
    if let GroundTruth::Mask(m) = p.ground_truth {
        if m.dimensions() != (w, h) {
            bail!("the mask is {}x{} but the image is {w}x{h}", m.width(), m.height());
        }
    }
    let up = upsample(p.map, p.map_size, (w, h));
    let mut tiles: Vec<(String, RgbImage)> = vec![(format!("image (score {:.3})", p.score), p.image.clone())];
    match p.ground_truth {
        GroundTruth::Unknown => {}
        GroundTruth::Normal => tiles.push(("ground truth (normal)".into(), RgbImage::new(w, h))),
        GroundTruth::Mask(m) => {
            let gt = RgbImage::from_fn(w, h, |x, y| if m.get_pixel(x, y).0[0] > 0 { image::Rgb([255, 255, 255]) } else { image::Rgb([0, 0, 0]) });
            tiles.push(("ground truth".into(), gt));
        }
    }
    let mut heat = p.image.clone();
    for (i, px) in heat.pixels_mut().enumerate() {
        let c = p.heat.colour(up[i]);
        for (v, &cv) in px.0.iter_mut().zip(c.iter()) {
            *v = (0.5 * *v as f32 + 0.5 * cv * 255.0).round() as u8;
        }
    }
    tiles.push(("heat map".into(), heat));
    if let Some(t) = p.threshold {
        let mask: Vec<bool> = up.iter().map(|&v| v >= t).collect();
        let thickness = ((w.min(h) as f32 / 200.0).round() as usize).max(1);
        let edge = contour(&mask, w as usize, h as usize, thickness);
        let mut pred = p.image.clone();
        for (i, px) in pred.pixels_mut().enumerate() {
            if edge[i] {
                px.0 = [255, 0, 0];
            }
        }
        tiles.push((format!("predicted mask (map ≥ {t:.3})"), pred));
    }
    let n = tiles.len() as u32;
    let text = png_text_available();
    let top = if text { TITLE } else { 0 };
    let (pw, ph) = (n * w + (n - 1) * GAP, h + top);
    let mut out = RgbImage::from_pixel(pw, ph, image::Rgb([255, 255, 255]));
    for (k, (_, t)) in tiles.iter().enumerate() {
        image::imageops::replace(&mut out, t, (k as u32 * (w + GAP)) as i64, top as i64);
    }
    if text {
        let (ow, oh) = out.dimensions();
        let mut raw = out.into_raw();
        {
            let root = BitMapBackend::with_buffer(&mut raw, (ow, oh)).into_drawing_area();
            let size = 16.min(((w as f32) / 14.0) as u32).max(9);
            for (k, (title, _)) in tiles.iter().enumerate() {
                let x = (k as u32 * (w + GAP)) as i32 + 2;
                root.draw(&Text::new(title.clone(), (x, 6), ("sans-serif", size))).map_err(err)?;
            }
            root.present().map_err(err)?;
        }
        out = RgbImage::from_raw(ow, oh, raw).expect("same size");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_a_constant_map_and_interpolates_between_centres() {
        assert!(upsample(&[2.0; 4], (2, 2), (5, 3)).iter().all(|&v| (v - 2.0).abs() < 1e-6));
        // Two columns 0 and 1 -> four: 0, 0.25, 0.75, 1.
        let up = upsample(&[0.0, 1.0], (2, 1), (4, 1));
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn the_contour_of_a_square_is_its_ring() {
        let (w, h) = (6, 6);
        let mask: Vec<bool> = (0..w * h).map(|i| (1..5).contains(&(i % w)) && (1..5).contains(&(i / w))).collect();
        let e = contour(&mask, w, h, 1);
        assert_eq!(e.iter().filter(|&&b| b).count(), 12); // a 4x4 square's ring
        assert!(!e[2 * w + 2] && e[w + 1]);
    }

    #[test]
    fn a_panel_has_one_tile_per_column_at_the_image_size() {
        let img = RgbImage::from_pixel(40, 30, image::Rgb([100, 100, 100]));
        let mut m = GrayImage::new(40, 30);
        m.put_pixel(10, 10, image::Luma([255]));
        let map = vec![0.0f32; 16];
        let input = PanelInput {
            image: &img,
            ground_truth: GroundTruth::Mask(&m),
            map: &map,
            map_size: (4, 4),
            heat: HeatScale { lo: 0.0, scale: 1.0 },
            threshold: Some(0.5),
            score: 0.1,
        };
        let p = panel(&input).unwrap();
        assert_eq!(p.width(), 4 * 40 + 3 * GAP);
        let top = p.height() - 30;
        assert_eq!(p.get_pixel(40 + GAP + 10, top + 10).0, [255, 255, 255]); // the mask pixel
        assert_eq!(p.get_pixel(40 + GAP + 11, top + 10).0, [0, 0, 0]);
        let unknown = panel(&PanelInput { ground_truth: GroundTruth::Unknown, threshold: None, ..input }).unwrap();
        assert_eq!(unknown.width(), 2 * 40 + GAP);
    }
}

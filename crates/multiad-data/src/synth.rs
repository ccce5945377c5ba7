//! A synthetic category in exact MVTec AD layout: procedural textures with
//! scratches, holes and stains, each with its mask. Deterministic by seed;
//! every image is drawn from its own RNG stream, so images can be generated
//! in parallel and any one of them re-created alone.
//!
//! For tests and the demo only: it is no stand-in for real data.

// The angle and phase ranges (0..3.14, 0..6.28) are part of what a seed
// draws: written as PI and TAU they would change every synthetic data set.
#![allow(clippy::approx_constant)]

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DataError, Result};

/// The defect types drawn, in the order of their test directories.
pub const DEFECTS: [&str; 3] = ["hole", "scratch", "stain"];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    pub category: String,
    pub seed: u64,
    pub size: u32,
    pub train: usize,
    pub test_good: usize,
    /// Test images per defect type.
    pub test_per_defect: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self { category: "synthetic".into(), seed: 0, size: 256, train: 60, test_good: 20, test_per_defect: 10 }
    }
}

/// splitmix64: decorrelates seeds built from small integers.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn stream(cfg: &SynthConfig, split: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(cfg.seed) ^ fnv(&cfg.category)) ^ split.wrapping_mul(1_000_003) ^ index))
}

/// The look shared by all images of a category: colours and pattern.
struct Style {
    base: [f32; 3],
    accent: [f32; 3],
    freq: f32,
    angle: f32,
    contrast: f32,
}

fn style(cfg: &SynthConfig) -> Style {
    let mut r = stream(cfg, 99, 0);
    let mut col = |lo: f32, hi: f32| [r.random_range(lo..hi), r.random_range(lo..hi), r.random_range(lo..hi)];
    let base = col(0.3, 0.7);
    let accent = col(0.2, 0.8);
    Style { base, accent, freq: r.random_range(6.0..14.0), angle: r.random_range(0.0..3.14), contrast: r.random_range(0.08..0.16) }
}

/// Smooth value noise: random values on a coarse lattice, interpolated with
/// smoothstep weights; several octaves summed.
fn value_noise(rng: &mut ChaCha8Rng, size: usize, octaves: &[(usize, f32)]) -> Vec<f32> {
    let mut out = vec![0f32; size * size];
    for &(cells, amp) in octaves {
        let n = cells + 2;
        let lattice: Vec<f32> = (0..n * n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        for y in 0..size {
            let fy = y as f32 / size as f32 * cells as f32;
            let (iy, ty) = (fy as usize, fy.fract());
            let sy = ty * ty * (3.0 - 2.0 * ty);
            for x in 0..size {
                let fx = x as f32 / size as f32 * cells as f32;
                let (ix, tx) = (fx as usize, fx.fract());
                let sx = tx * tx * (3.0 - 2.0 * tx);
                let v = |a: usize, b: usize| lattice[b * n + a];
                let top = v(ix, iy) * (1.0 - sx) + v(ix + 1, iy) * sx;
                let bot = v(ix, iy + 1) * (1.0 - sx) + v(ix + 1, iy + 1) * sx;
                out[y * size + x] += amp * (top * (1.0 - sy) + bot * sy);
            }
        }
    }
    out
}

/// A defect-free textured image.
fn texture(st: &Style, rng: &mut ChaCha8Rng, size: usize) -> Vec<[f32; 3]> {
    let noise = value_noise(rng, size, &[(4, 0.5), (16, 0.3), (48, 0.2)]);
    let phase = rng.random_range(0.0..6.28f32);
    let (ca, sa) = (st.angle.cos(), st.angle.sin());
    let w = st.freq * std::f32::consts::TAU / size as f32;
    (0..size * size)
        .map(|i| {
            let (x, y) = ((i % size) as f32, (i / size) as f32);
            let weave = ((x * ca + y * sa) * w + phase).sin() * ((x * -sa + y * ca) * w).sin();
            let t = 0.5 + 0.5 * weave;
            let n = noise[i] * st.contrast;
            std::array::from_fn(|c| (st.base[c] * (1.0 - 0.3 * t) + st.accent[c] * 0.3 * t + n).clamp(0.0, 1.0))
        })
        .collect()
}

/// Paints one defect; returns its mask (1 = defect).
fn paint_defect(kind: &str, img: &mut [[f32; 3]], rng: &mut ChaCha8Rng, size: usize) -> Vec<u8> {
    let mut mask = vec![0u8; size * size];
    let s = size as f32;
    let cx = rng.random_range(0.25 * s..0.75 * s);
    let cy = rng.random_range(0.25 * s..0.75 * s);
    match kind {
        "hole" => {
            // A dark ellipse with a lighter rim.
            let (rx, ry) = (rng.random_range(0.04 * s..0.1 * s), rng.random_range(0.04 * s..0.1 * s));
            for y in 0..size {
                for x in 0..size {
                    let d = ((x as f32 - cx) / rx).powi(2) + ((y as f32 - cy) / ry).powi(2);
                    let i = y * size + x;
                    if d <= 1.0 {
                        mask[i] = 1;
                        let depth = 0.15 + 0.1 * d;
                        img[i] = [depth; 3];
                    } else if d <= 1.4 {
                        for v in img[i].iter_mut() {
                            *v = (*v + 0.15).min(1.0);
                        }
                    }
                }
            }
        }
        "scratch" => {
            // A thin quadratic Bezier curve, brighter than the surface.
            let len = rng.random_range(0.3 * s..0.5 * s);
            let a = rng.random_range(0.0..std::f32::consts::PI);
            let (dx, dy) = (a.cos() * len / 2.0, a.sin() * len / 2.0);
            let p0 = (cx - dx, cy - dy);
            let p2 = (cx + dx, cy + dy);
            let p1 = (cx + rng.random_range(-0.1 * s..0.1 * s), cy + rng.random_range(-0.1 * s..0.1 * s));
            let width = rng.random_range(1.0..2.5f32).max(s / 128.0);
            let steps = (len * 3.0) as usize;
            let shade = if rng.random_bool(0.5) { 0.9 } else { 0.1 };
            for k in 0..=steps {
                let t = k as f32 / steps as f32;
                let px = (1.0 - t).powi(2) * p0.0 + 2.0 * (1.0 - t) * t * p1.0 + t * t * p2.0;
                let py = (1.0 - t).powi(2) * p0.1 + 2.0 * (1.0 - t) * t * p1.1 + t * t * p2.1;
                let r = width.ceil() as i64;
                for oy in -r..=r {
                    for ox in -r..=r {
                        let (x, y) = (px as i64 + ox, py as i64 + oy);
                        if x < 0 || y < 0 || x >= size as i64 || y >= size as i64 {
                            continue;
                        }
                        if ((x as f32 - px).powi(2) + (y as f32 - py).powi(2)).sqrt() <= width {
                            let i = y as usize * size + x as usize;
                            mask[i] = 1;
                            img[i] = [shade; 3];
                        }
                    }
                }
            }
        }
        _ => {
            // "stain": a tinted blob with a noisy outline.
            let r0 = rng.random_range(0.06 * s..0.14 * s);
            let lobes: Vec<(f32, f32)> = (0..5).map(|k| (rng.random_range(0.0..0.35), (k + 2) as f32)).collect();
            let phase = rng.random_range(0.0..6.28f32);
            let tint = [rng.random_range(0.5..0.9), rng.random_range(0.1..0.4), rng.random_range(0.0..0.3)];
            for y in 0..size {
                for x in 0..size {
                    let (ddx, ddy) = (x as f32 - cx, y as f32 - cy);
                    let th = ddy.atan2(ddx);
                    let rad = r0 * (1.0 + lobes.iter().map(|&(a, f)| a * (f * th + phase).sin()).sum::<f32>() * 0.5);
                    if (ddx * ddx + ddy * ddy).sqrt() <= rad {
                        let i = y * size + x;
                        mask[i] = 1;
                        for c in 0..3 {
                            img[i][c] = 0.35 * img[i][c] + 0.65 * tint[c];
                        }
                    }
                }
            }
        }
    }
    mask
}

fn to_rgb(img: &[[f32; 3]], size: u32) -> RgbImage {
    let raw: Vec<u8> = img.iter().flat_map(|p| p.map(|v| (v * 255.0).round() as u8)).collect();
    RgbImage::from_raw(size, size, raw).expect("buffer has size*size*3 bytes")
}

fn save(img: &RgbImage, path: &Path) -> Result<()> {
    img.save(path).map_err(|e| DataError::file(path, format!("cannot write image: {e}")))
}

fn create_dir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| DataError::layout(p, format!("cannot create directory: {e}")))
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct SynthReport {
    pub dir: PathBuf,
    pub train: usize,
    pub test_good: usize,
    pub test_defective: usize,
}

/// Writes `out_dir/<category>` in MVTec AD layout. The category is built in a
/// temporary sibling directory and renamed into place at the end, so an
/// interrupted run leaves nothing half-written; an existing category is never
/// overwritten.
pub fn generate(out_dir: &Path, cfg: &SynthConfig) -> Result<SynthReport> {
    if cfg.size < 32 {
        return Err(DataError::Other(format!("synthetic image size {} is too small (minimum 32)", cfg.size)));
    }
    if cfg.category.is_empty() || cfg.category.contains(['/', '\\']) || cfg.category.starts_with('.') {
        return Err(DataError::Other(format!("invalid category name {:?}", cfg.category)));
    }
    let final_dir = out_dir.join(&cfg.category);
    if final_dir.exists() {
        return Err(DataError::layout(&final_dir, "already exists; choose another --out or category, or delete it first"));
    }
    create_dir(out_dir)?;
    let tmp = out_dir.join(format!(".{}.partial-{}", cfg.category, std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| DataError::layout(&tmp, format!("cannot clear: {e}")))?;
    }
    let st = style(cfg);
    let size = cfg.size as usize;
    let write = || -> Result<()> {
        create_dir(&tmp.join("train/good"))?;
        create_dir(&tmp.join("test/good"))?;
        for d in DEFECTS {
            create_dir(&tmp.join("test").join(d))?;
            create_dir(&tmp.join("ground_truth").join(d))?;
        }
        (0..cfg.train).into_par_iter().try_for_each(|i| {
            let mut rng = stream(cfg, 0, i as u64);
            save(&to_rgb(&texture(&st, &mut rng, size), cfg.size), &tmp.join(format!("train/good/{i:03}.png")))
        })?;
        (0..cfg.test_good).into_par_iter().try_for_each(|i| {
            let mut rng = stream(cfg, 1, i as u64);
            save(&to_rgb(&texture(&st, &mut rng, size), cfg.size), &tmp.join(format!("test/good/{i:03}.png")))
        })?;
        let jobs: Vec<(usize, usize)> = (0..DEFECTS.len()).flat_map(|d| (0..cfg.test_per_defect).map(move |i| (d, i))).collect();
        jobs.into_par_iter().try_for_each(|(d, i)| {
            let mut rng = stream(cfg, 2 + d as u64, i as u64);
            let mut img = texture(&st, &mut rng, size);
            let mask = paint_defect(DEFECTS[d], &mut img, &mut rng, size);
            save(&to_rgb(&img, cfg.size), &tmp.join(format!("test/{}/{i:03}.png", DEFECTS[d])))?;
            let m = GrayImage::from_raw(cfg.size, cfg.size, mask.iter().map(|&v| v * 255).collect()).unwrap();
            let p = tmp.join(format!("ground_truth/{}/{i:03}_mask.png", DEFECTS[d]));
            m.save(&p).map_err(|e| DataError::file(&p, format!("cannot write mask: {e}")))
        })
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| DataError::layout(&final_dir, format!("cannot move into place: {e}")))?;
    Ok(SynthReport { dir: final_dir, train: cfg.train, test_good: cfg.test_good, test_defective: cfg.test_per_defect * DEFECTS.len() })
}

//! `cargo xtask bench metrics|loading|all`.
//!
//! * metrics: pixel AUROC and AUPRO over N pixels (default 50 million) of
//!   synthetic anomaly maps, pixels per second; and the radix sort the metrics
//!   rest on against the standard library's comparison sort on the same keys.
//! * loading: decode + resize a folder of 900x900 PNGs to 256x256, images per
//!   second, on all cores against a single thread.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use multiad_data::{BatchLoader, ImageConfig, Label, Sample};
use multiad_metrics::{aupro, AnomalyMap, BinaryScores};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

#[derive(Copy, Clone, ValueEnum, PartialEq)]
pub enum Which {
    Metrics,
    Loading,
    /// Convolution: candle's own against ours, forward + backward.
    Conv,
    /// Multi-AD networks: teacher forward, student training step, inference,
    /// against PyTorch when it is importable.
    Model,
    /// PatchCore: nearest-neighbour search against brute force, and a
    /// paper-scale fit's time and peak memory.
    Patchcore,
    /// metrics + loading + conv (not model or patchcore: minutes at the paper scale).
    All,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Pixels scored by the metrics bench.
    #[arg(long, default_value_t = 50_000_000)]
    pixels: usize,
    /// 900x900 PNGs decoded by the loading bench.
    #[arg(long, default_value_t = 96)]
    images: usize,
    /// Preset whose networks the model bench times (experiments/<preset>.yaml).
    #[arg(long, default_value = "paper")]
    preset: String,
    /// Batch size of the model bench.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Rounds of the model bench: candle and PyTorch take turns and each
    /// keeps its best time (this machine's speed drifts between minutes).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Where the model bench runs, both sides: cpu or cuda[:N] (a
    /// `--features cuda` build; PyTorch then times the same GPU).
    #[arg(long, default_value = "cpu")]
    device: multiad_nn::DeviceSpec,
    /// Training images of the PatchCore fit.
    #[arg(long, default_value_t = 200)]
    train_images: usize,
    /// Coreset fraction of the PatchCore fit (0.1 or 0.01 in the paper).
    #[arg(long, default_value_t = 0.1)]
    coreset_ratio: f64,
}

pub fn run(a: BenchArgs) -> Result<()> {
    println!("machine: {} logical cores (rayon threads: {})", num_cpus(), rayon::current_num_threads());
    if a.which == Which::Metrics || a.which == Which::All {
        metrics(a.pixels)?;
    }
    if a.which == Which::Loading || a.which == Which::All {
        loading(a.images)?;
    }
    if a.which == Which::Conv || a.which == Which::All {
        crate::model_bench::conv()?;
    }
    if a.which == Which::Model {
        crate::model_bench::model(&a.preset, a.batch, a.rounds.max(1), a.device)?;
    }
    if a.which == Which::Patchcore {
        crate::patchcore_bench::run(a.train_images, a.coreset_ratio)?;
    }
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Synthetic maps of 256x256: smooth-ish noise, a few rectangles per
/// anomalous map scored higher on average, scores quantised to 1/4096 so that
/// ties occur as they do in real maps.
fn synthetic_maps(pixels: usize) -> (Vec<f32>, Vec<u8>, usize) {
    const W: usize = 256;
    let n_maps = pixels.div_ceil(W * W);
    let mut scores = vec![0f32; n_maps * W * W];
    let mut masks = vec![0u8; n_maps * W * W];
    scores.par_chunks_mut(W * W).zip(masks.par_chunks_mut(W * W)).enumerate().for_each(|(k, (s, m))| {
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        if k % 2 == 1 {
            for _ in 0..rng.random_range(1..4) {
                let (x0, y0) = (rng.random_range(0..W - 40), rng.random_range(0..W - 40));
                let (w, h) = (rng.random_range(2..40), rng.random_range(2..40));
                for y in y0..y0 + h {
                    m[y * W + x0..y * W + x0 + w].fill(1);
                }
            }
        }
        for (v, &l) in s.iter_mut().zip(m.iter()) {
            let x: f32 = rng.random::<f32>() + if l == 1 { 0.5 } else { 0.0 };
            *v = (x * 4096.0).round() / 4096.0;
        }
    });
    (scores, masks, n_maps)
}

fn metrics(pixels: usize) -> Result<()> {
    println!("\n== metrics: {pixels} pixels of 256x256 maps ==");
    let (scores, masks, n_maps) = synthetic_maps(pixels);
    let n = scores.len() as f64;

    let t = Instant::now();
    let mut b = BinaryScores::with_capacity(scores.len());
    b.push_map(&scores, &masks)?;
    let sorted = b.into_sorted();
    let auroc = sorted.auroc()?;
    let f1 = sorted.f1_max()?;
    let t_auroc = secs(t);
    println!("pixel AUROC + F1-max   {:>8.3} s  {:>7.1} Mpixel/s   (AUROC {auroc:.4}, F1-max {:.4})", t_auroc, n / t_auroc / 1e6, f1.f1);

    sklearn_auroc(&scores, &masks, auroc, t_auroc)?;

    let maps: Vec<AnomalyMap> = (0..n_maps)
        .map(|k| AnomalyMap { scores: &scores[k * 65536..(k + 1) * 65536], mask: &masks[k * 65536..(k + 1) * 65536], width: 256, height: 256 })
        .collect();
    let t = Instant::now();
    let pro = aupro(&maps, 0.3)?;
    let t_pro = secs(t);
    println!("AUPRO (FPR <= 0.3)     {:>8.3} s  {:>7.1} Mpixel/s   (AUPRO {pro:.4})", t_pro, n / t_pro / 1e6);

    // The sort behind both, against a comparison sort of the same keys.
    let keys: Vec<u32> = scores.iter().map(|&s| s.to_bits() | 0x8000_0000).collect();
    let mut a = keys.clone();
    let t = Instant::now();
    a.sort_unstable();
    let t_std = secs(t);
    let mut b = BinaryScores::with_capacity(keys.len());
    for &s in &scores {
        b.push(s, false)?;
    }
    let t = Instant::now();
    let _ = b.into_sorted();
    let t_radix = secs(t);
    println!("sort {} keys: radix {:.3} s, std sort_unstable {:.3} s -> radix is {:.2}x faster", keys.len(), t_radix, t_std, t_std / t_radix);
    Ok(())
}

/// The same pixel AUROC with scikit-learn's `roc_auc_score`, side by side,
/// when `python3` can import it (timed inside Python, loading excluded).
fn sklearn_auroc(scores: &[f32], masks: &[u8], ours: f64, ours_s: f64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (sp, mp) = (dir.path().join("scores.f32"), dir.path().join("masks.u8"));
    std::fs::write(&sp, scores.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
    std::fs::write(&mp, masks)?;
    let script = "import sys, time, numpy as np\n\
from sklearn.metrics import roc_auc_score\n\
s = np.fromfile(sys.argv[1], dtype='<f4'); m = np.fromfile(sys.argv[2], dtype=np.uint8)\n\
t = time.perf_counter(); a = roc_auc_score(m, s); print(a, time.perf_counter() - t)\n";
    let out = std::process::Command::new("python3").args(["-c", script]).arg(&sp).arg(&mp).output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let mut f = text.split_whitespace();
            let (a, t): (f64, f64) = (f.next().unwrap_or("nan").parse()?, f.next().unwrap_or("nan").parse()?);
            println!(
                "scikit-learn roc_auc_score {:>8.3} s  (AUROC {a:.6}, ours {ours:.6}, |diff| {:.1e}) -> ours is {:.1}x faster",
                t,
                (a - ours).abs(),
                t / ours_s
            );
        }
        _ => println!("scikit-learn: not importable by python3 (pip install scikit-learn numpy); comparison skipped"),
    }
    Ok(())
}

fn loading(count: usize) -> Result<()> {
    println!("\n== loading: {count} PNGs of 900x900 RGB -> 256x256 ==");
    let dir = tempfile::tempdir()?;
    let paths: Vec<_> = (0..count)
        .into_par_iter()
        .map(|i| {
            // Textured content so that PNG compression is realistic (noise
            // over gradients), not a flat image that decodes for free.
            let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
            let img = image::RgbImage::from_fn(900, 900, |x, y| {
                let n: u8 = rng.random_range(0..24);
                image::Rgb([((x / 4) as u8).wrapping_add(n), ((y / 4) as u8).wrapping_add(n), (((x + y) / 8) as u8).wrapping_add(n)])
            });
            let p = dir.path().join(format!("{i:04}.png"));
            img.save(&p).map(|_| p)
        })
        .collect::<Result<_, _>>()?;
    let bytes: u64 = paths.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    println!("(files: {:.1} MB on disk)", bytes as f64 / 1e6);
    let samples: Vec<Sample> = paths.iter().map(|p| Sample { image: p.clone(), mask: None, label: Label::Normal, defect_type: "good".into() }).collect();
    let cfg = ImageConfig::square(256);
    let time = |threads: usize| -> Result<f64> {
        let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?);
        let loader = BatchLoader::new(samples.clone(), cfg, 16).with_pool(pool);
        let t = Instant::now();
        for b in loader.iter() {
            b?;
        }
        Ok(secs(t))
    };
    time(num_cpus())?; // warm the page cache
    breakdown(&paths)?;
    let t1 = time(1)?;
    let tn = time(num_cpus())?;
    println!("1 thread      {:>7.3} s  {:>7.1} images/s", t1, count as f64 / t1);
    println!("{} threads     {:>7.3} s  {:>7.1} images/s  -> {:.2}x of 1 thread", num_cpus(), tn, count as f64 / tn, t1 / tn);
    Ok(())
}

/// Where one image's loading time goes, single-threaded.
fn breakdown(paths: &[std::path::PathBuf]) -> Result<()> {
    let (mut t_read, mut t_dec, mut t_f32, mut t_resize, mut t_ours) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in paths {
        let t = Instant::now();
        let bytes = std::fs::read(p)?;
        t_read += secs(t);
        let t = Instant::now();
        let img = image::load_from_memory(&bytes)?;
        t_dec += secs(t);
        let t = Instant::now();
        let f = img.to_rgb32f();
        t_f32 += secs(t);
        let t = Instant::now();
        let r = image::imageops::resize(&f, 256, 256, image::imageops::FilterType::Triangle);
        t_resize += secs(t);
        std::hint::black_box(r);
        let t = Instant::now();
        let mut out = vec![0f32; 3 * 256 * 256];
        multiad_data::image_to_chw(&img, &ImageConfig::square(256), &mut out);
        t_ours += secs(t);
    }
    let n = paths.len() as f64 * 1e-3;
    println!(
        "per image, 1 thread: read {:.2} ms, PNG decode {:.2} ms; resize+normalise: image crate in f32 {:.2} ms, ours (8-bit SIMD resize) {:.2} ms -> {:.2}x",
        t_read / n,
        t_dec / n,
        (t_f32 + t_resize) / n,
        t_ours / n,
        (t_f32 + t_resize) / t_ours
    );
    Ok(())
}

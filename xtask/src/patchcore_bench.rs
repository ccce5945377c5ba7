//! `cargo xtask bench patchcore`: what PatchCore costs at the paper's scale.
//!
//! * nearest-neighbour search of one image's patches (32x32 = 1024 queries
//!   of 1024 dimensions) in a 10% memory bank of 200 training images
//!   (20,480 entries): our blocked-gemm search against the plain loop
//!   (both on every core), queries per second and the ratio;
//! * fitting on N synthetic 256x256 training images (default 200) with
//!   WideResNet-50-2's layout (seeded random weights: same cost as the
//!   ImageNet ones, no download): time per phase and peak memory.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use multiad_backbones::backbone::{BackboneConfig, BackboneKind};
use multiad_data::synth::{generate, SynthConfig};
use multiad_detector::{DataRef, FitOptions, RunDir};
use multiad_patchcore::knn::{brute_force, Bank};
use multiad_patchcore::{PatchCore, PatchCoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub fn run(images: usize, coreset_ratio: f64) -> Result<()> {
    knn()?;
    fit(images, coreset_ratio)
}

fn knn() -> Result<()> {
    let (m, d, nq, brute_q) = (20_480usize, 1024usize, 1024usize, 128usize);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let bank: Vec<f32> = (0..m * d).map(|_| rng.random::<f32>()).collect();
    let q: Vec<f32> = (0..nq * d).map(|_| rng.random::<f32>()).collect();
    let b = Bank::new(Tensor::from_vec(bank.clone(), (m, d), &Device::Cpu)?)?;
    let qt = Tensor::from_vec(q.clone(), (nq, d), &Device::Cpu)?;
    b.nearest(&qt.narrow(0, 0, 8)?)?; // warm-up
    let t = Instant::now();
    let (ours, _) = b.nearest(&qt)?;
    let ours_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let brute: Vec<f32> = q[..brute_q * d].par_chunks(d).map(|qi| brute_force(qi, &bank, d).0[0]).collect();
    let brute_s = t.elapsed().as_secs_f64();
    let max_diff = ours.iter().zip(&brute).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let (qps_ours, qps_brute) = (nq as f64 / ours_s, brute_q as f64 / brute_s);
    println!("\nPatchCore nearest neighbour: bank {m} x {d}, queries of one 256x256 image ({nq})");
    println!("{:<28} {:>12} {:>14}", "", "queries/s", "ms per image");
    println!("{:<28} {:>12.0} {:>14.1}", "blocked gemm (ours)", qps_ours, 1e3 * nq as f64 / qps_ours);
    println!("{:<28} {:>12.0} {:>14.1}", "brute force (plain loop)", qps_brute, 1e3 * nq as f64 / qps_brute);
    println!("ratio: ours {:.1}x the brute force's queries/s; largest distance difference {max_diff:.2e}", qps_ours / qps_brute);
    Ok(())
}

fn fit(images: usize, coreset_ratio: f64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let synth = SynthConfig { category: "bench".into(), seed: 0, size: 256, train: images, test_good: 1, test_per_defect: 1 };
    generate(dir.path(), &synth)?;
    let data = DataRef::from_arg(&dir.path().join("bench"), std::path::Path::new("."))?;
    // The paper's recipe (the config's defaults) on a random WideResNet-50-2.
    let mut cfg = PatchCoreConfig { coreset_ratio, ..Default::default() };
    cfg.common.preset = "bench".into();
    cfg.common.backbone = BackboneConfig::of(BackboneKind::RandomWideResnet50_2);
    let run = RunDir::create(&dir.path().join("run"), &cfg, &data)?;
    let mut det = PatchCore::new(&cfg, &Device::Cpu)?;
    println!("\nPatchCore fit: {images} images 256x256, WideResNet-50-2 layout (random weights), layers 2+3, 1024-d, coreset {:.0}%", coreset_ratio * 100.0);
    let before = multiad_detector::peak_rss_mib().unwrap_or(0.0);
    let t = Instant::now();
    multiad_detector::train_run(&mut det, &run, FitOptions::default(), &mut std::io::stdout())?;
    let secs = t.elapsed().as_secs_f64();
    let peak = multiad_detector::peak_rss_mib().unwrap_or(f64::NAN);
    println!("\nfit {secs:.1} s in total; memory bank {} x 1024; peak RSS {:.0} MiB ({:.0} MiB before the fit)", det.bank_len(), peak, before);
    Ok(())
}

//! The inputs of the differential test (`scripts/golden_fixture.py`): the
//! initial weights of a preset's networks (random teacher, student,
//! discriminator) and one batch of images, as safetensors.
//!
//! cargo run -p multiad --example golden_inputs -- experiments/smoke.yaml OUT.safetensors [BATCH]

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use multiad::config::ExperimentConfig;
use multiad::model::MultiAd;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: golden_inputs CONFIG.yaml OUT.safetensors [BATCH]");
    }
    let mut cfg = ExperimentConfig::from_yaml_file(Path::new(&args[1]))?;
    // The dropout mask comes from our own generator, which PyTorch cannot
    // draw; the differential test compares everything else with it off.
    cfg.discriminator.dropout = 0.0;
    let batch: usize = args.get(3).map(|b| b.parse()).transpose()?.unwrap_or(4);
    let dev = Device::Cpu;
    let model = MultiAd::build(&cfg, &dev)?;
    let teacher = model.teacher.random_params().context("the differential test needs `teacher.kind: random` (pretrained teachers are compared by their own tests)")?;
    let mut out: HashMap<String, Tensor> = model.weights();
    for (k, v) in teacher.tensors() {
        out.insert(format!("teacher.{k}"), v);
    }
    let s = cfg.image_size as usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let px: Vec<f32> = (0..batch * 3 * s * s).map(|_| normal.sample(&mut rng)).collect();
    out.insert("input.images".into(), Tensor::from_vec(px, (batch, 3, s, s), &dev)?);
    candle_core::safetensors::save(&out, &args[2])?;
    eprintln!("wrote {} tensors to {}", out.len(), args[2]);
    Ok(())
}

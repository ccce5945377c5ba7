//! The differential test against an independent PyTorch implementation
//! (`scripts/golden_fixture.py`, issue 18), at the smoke scale: from the
//! same weights and batch, multiad must reproduce PyTorch's L_G, L_D and
//! L_adv, every parameter's gradient, every tensor after one Adam step of
//! each network (batch-norm statistics included), Ψ's statistics, the
//! fused and smoothed map and the image scores, each within 1e-4 relative
//! (the largest absolute difference over the largest absolute value of the
//! reference tensor). PyTorch computed in float64; multiad in float32.
//!
//! The fixture is committed; when the smoke preset or the networks change on
//! purpose, regenerate it:
//!   cargo run -p multiad --example golden_inputs -- experiments/smoke.yaml /tmp/in.safetensors
//!   python3 scripts/golden_fixture.py --config experiments/smoke.yaml --inputs /tmp/in.safetensors \
//!       --out crates/multiad/tests/fixtures/smoke_golden.safetensors

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use multiad::anomaly_map::{fuse, image_scores, FusionStats, StatsAccumulator};
use multiad::config::ExperimentConfig;
use multiad::model::MultiAd;
use multiad::train::{train_step, Network};
use multiad_nn::{Adam, AdamConfig};
use rand::SeedableRng;

const TOLERANCE: f64 = 1e-4;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// max |a - b| / max |b| over a tensor (b: the reference).
fn relative(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f64> = a.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1().unwrap();
    let b: Vec<f64> = b.flatten_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f64::max);
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

struct Worst {
    what: String,
    err: f64,
    failures: Vec<String>,
}

impl Worst {
    fn check(&mut self, what: &str, ours: &Tensor, reference: &Tensor) {
        let e = relative(ours, reference);
        if e > self.err {
            self.err = e;
            self.what = what.to_string();
        }
        if !(e <= TOLERANCE) {
            self.failures.push(format!("{what}: relative error {e:.2e}"));
        }
    }
}

#[test]
fn one_training_step_and_the_map_match_pytorch_at_the_smoke_scale() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smoke_golden.safetensors");
    let dev = Device::Cpu;
    let fx: HashMap<String, Tensor> = candle_core::safetensors::load(&path, &dev).unwrap();
    let mut cfg = ExperimentConfig::from_yaml_file(&repo().join("experiments/smoke.yaml")).unwrap();
    cfg.discriminator.dropout = 0.0; // as the fixture was made (examples/golden_inputs.rs)
    let model = MultiAd::build(&cfg, &dev).unwrap();
    model.teacher.random_params().unwrap().load_from(&fx, "teacher.", &path).unwrap();
    model.load_weights(&fx, &path).unwrap();
    let images = &fx["input.images"];
    let mut worst = Worst { what: String::new(), err: 0.0, failures: Vec::new() };

    // One step of Algorithm 1, through the training loop's own step.
    let tcfg = &cfg.train;
    let adam = |lr| AdamConfig { lr, beta1: tcfg.beta1, beta2: tcfg.beta2, eps: 1e-8, weight_decay: 0.0 };
    let mut opt_s = Adam::new(model.student_params.trainable(), adam(tcfg.lr)).unwrap();
    let mut opt_d = Adam::new(model.disc_params.trainable(), adam(tcfg.disc_lr)).unwrap();
    let t_feats = model.teacher.forward(images).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let (student_vars, disc_vars) = (model.student_params.trainable(), model.disc_params.trainable());
    let mut grads: Vec<(String, Tensor)> = Vec::new();
    let losses = train_step(&model, &mut opt_s, Some(&mut opt_d), images, &t_feats, &mut rng, &mut |net, g| {
        let (prefix, vars) = match net {
            Network::Discriminator => ("disc.", &disc_vars),
            Network::Student => ("student.", &student_vars),
        };
        for (name, var) in vars {
            let grad = g.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {prefix}{name}"));
            grads.push((format!("{prefix}{name}"), grad.clone()));
        }
    })
    .unwrap();
    let scalar = |v: f64| Tensor::new(&[v as f32], &dev).unwrap();
    worst.check("L_G", &scalar(losses.g), &fx["loss.g"]);
    worst.check("L_D", &scalar(losses.d.unwrap()), &fx["loss.d"]);
    worst.check("L_adv", &scalar(losses.adv.unwrap()), &fx["loss.adv"]);
    assert_eq!(grads.len(), student_vars.len() + disc_vars.len());
    for (name, g) in &grads {
        worst.check(&format!("grad {name}"), g, &fx[&format!("grad.{name}")]);
    }
    let after = model.weights();
    let mut names: Vec<&String> = after.keys().collect();
    names.sort();
    for name in names {
        worst.check(&format!("after one step: {name}"), &after[name], &fx[&format!("after.{name}")]);
    }

    // The map after the step: Ψ's statistics of this batch, Eqs 13-15.
    let maps = model.layer_maps(images).unwrap();
    let mut acc = StatsAccumulator::default();
    acc.add(&maps).unwrap();
    let stats = acc.finish(0.0);
    let to_tensor = |v: &[f64]| Tensor::new(v.iter().map(|&x| x as f32).collect::<Vec<_>>().as_slice(), &dev).unwrap();
    worst.check("Ψ mean", &to_tensor(&stats.mean), &fx["psi.mean"]);
    worst.check("Ψ std", &to_tensor(&stats.std), &fx["psi.std"]);
    let reference_stats = FusionStats {
        mean: fx["psi.mean"].to_vec1::<f32>().unwrap().iter().map(|&x| x as f64).collect(),
        std: fx["psi.std"].to_vec1::<f32>().unwrap().iter().map(|&x| x as f64).collect(),
        train_max_score: 0.0,
        images: 0,
    };
    let s = cfg.image_size as usize;
    let fused = fuse(&maps, Some(&reference_stats), s, s, cfg.inference.sigma).unwrap();
    worst.check("map", &fused.squeeze(1).unwrap(), &fx["map"]);
    let scores = image_scores(&fused).unwrap();
    worst.check("score", &Tensor::new(scores.as_slice(), &dev).unwrap(), &fx["score"]);

    println!("worst relative error against PyTorch: {:.2e} ({})", worst.err, worst.what);
    assert!(
        worst.failures.is_empty(),
        "{} tensors differ from PyTorch by more than {TOLERANCE:e} (relative):\n{}",
        worst.failures.len(),
        worst.failures.join("\n")
    );
}

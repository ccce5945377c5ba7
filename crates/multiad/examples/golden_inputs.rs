//! The inputs of the differential test (`scripts/golden_fixture.py`): the
//! initial weights of a preset's networks (teacher, student, discriminator)
//! and one batch of images as safetensors, and the config they are for.
//!
//! cargo run --release -p multiad --example golden_inputs -- experiments/cpu.yaml OUT_DIR [BATCH] [TEACHER_WEIGHTS]
//!
//! Writes OUT_DIR/inputs.safetensors and OUT_DIR/config.yaml (the preset with
//! the discriminator's dropout off, and `teacher.weights` pointing at the
//! teacher's file). A pretrained teacher gets seeded random weights unless
//! TEACHER_WEIGHTS names a file: the test compares implementations, and the
//! WideResNet-50-2 weights are not on this machine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use multiad::config::{ExperimentConfig, TeacherKind};
use multiad::model::MultiAd;
use multiad_backbones::efficientnet::EfficientNetLite0;
use multiad_backbones::resnet::{ResNet, ResNetKind};
use multiad_detector::ConfigFile;
use multiad_nn::ParamStore;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: golden_inputs CONFIG.yaml OUT_DIR [BATCH] [TEACHER_WEIGHTS]");
    }
    let mut cfg = ExperimentConfig::from_yaml_file(Path::new(&args[1]))?;
    let out_dir = PathBuf::from(&args[2]);
    std::fs::create_dir_all(&out_dir)?;
    let batch: usize = args.get(3).map(|b| b.parse()).transpose()?.unwrap_or(4);
    let dev = Device::Cpu;
    // The dropout mask comes from our own generator, which PyTorch cannot
    // draw; the differential test compares everything else with it off.
    cfg.discriminator.dropout = 0.0;
    if cfg.teacher.kind != TeacherKind::Random {
        let file = match args.get(4) {
            Some(w) => PathBuf::from(w),
            None => {
                let store = ParamStore::new(cfg.seed ^ 0x7eac_4e2d_0000_0002);
                match cfg.teacher.kind {
                    TeacherKind::EfficientnetLite0 => drop(EfficientNetLite0::new(store.var_builder(&dev), false)?),
                    TeacherKind::WideResnet50_2 => drop(ResNet::new(ResNetKind::WideResNet50_2, store.var_builder(&dev))?),
                    TeacherKind::Resnet18 => drop(ResNet::new(ResNetKind::ResNet18, store.var_builder(&dev))?),
                    TeacherKind::Random => unreachable!(),
                }
                let f = out_dir.join("teacher.safetensors");
                candle_core::safetensors::save(&store.tensors(), &f)?;
                f
            }
        };
        cfg.teacher.weights = Some(std::fs::canonicalize(&file)?);
    }
    let model = MultiAd::build(&cfg, &dev)?;
    let mut out: HashMap<String, Tensor> = model.weights();
    let teacher: HashMap<String, Tensor> = match (model.teacher.random_params(), &cfg.teacher.weights) {
        (Some(p), _) => p.tensors(),
        (None, Some(f)) => candle_core::safetensors::load(f, &dev)?,
        (None, None) => unreachable!("a pretrained teacher has its file by now"),
    };
    for (k, v) in teacher {
        out.insert(format!("teacher.{k}"), v);
    }
    let s = cfg.image_size as usize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    let px: Vec<f32> = (0..batch * 3 * s * s).map(|_| normal.sample(&mut rng)).collect();
    out.insert("input.images".into(), Tensor::from_vec(px, (batch, 3, s, s), &dev)?);
    candle_core::safetensors::save(&out, out_dir.join("inputs.safetensors"))?;
    std::fs::write(out_dir.join("config.yaml"), cfg.to_yaml())?;
    eprintln!("wrote {} tensors and the config to {}", out.len(), out_dir.display());
    Ok(())
}

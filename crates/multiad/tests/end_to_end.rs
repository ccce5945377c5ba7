//! Multi-AD end to end at the `smoke` scale: synthetic data, training,
//! testing; resumption; a diverging run; bad configs and checkpoints.

use std::path::{Path, PathBuf};

use multiad::config::Flips;
use multiad::{DataRef, ExperimentConfig, RunDir, TrainOptions};
use multiad_data::synth::{generate, SynthConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn smoke_config() -> ExperimentConfig {
    let p = repo().join("experiments/smoke.yaml");
    ExperimentConfig::from_yaml_file(&p).unwrap()
}

fn synthetic(dir: &Path, seed: u64) -> DataRef {
    let cfg = SynthConfig { category: "tiles".into(), seed, size: 64, train: 48, test_good: 16, test_per_defect: 8 };
    generate(dir, &cfg).unwrap();
    DataRef::from_arg(&dir.join("tiles"), Path::new(".")).unwrap()
}

fn quiet() -> std::io::Sink {
    std::io::sink()
}

#[test]
fn smoke_preset_separates_synthetic_defects() {
    multiad::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 0);
    let run = RunDir::create(&t.path().join("run"), &smoke_config(), &data).unwrap();
    multiad::train(&run, TrainOptions::default(), &mut quiet()).unwrap();
    let m = multiad::test(&run, true, &mut quiet()).unwrap();
    eprintln!("smoke metrics: {m:?}");
    multiad_detector::testing::assert_smoke_floor("multiad", &m);
    // Outputs a user reads: metrics.json, scores.csv with one row per test image, maps.npy.
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.path("metrics.json")).unwrap()).unwrap();
    for k in ["image_auroc", "pixel_auroc", "aupro", "f1_max"] {
        assert!(metrics[k].is_number(), "metrics.json lacks {k}");
    }
    let csv = std::fs::read_to_string(run.path("scores.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "path,label,defect_type,score");
    assert_eq!(csv.lines().count(), 1 + 16 + 24);
    let npy = std::fs::read(run.path("maps.npy")).unwrap();
    assert!(npy.starts_with(b"\x93NUMPY"));
    assert_eq!(npy.len(), 128 + 40 * 64 * 64 * 4);
    // Heat maps for new images.
    let imgs = ["hole", "stain"].map(|d| t.path().join(format!("data/tiles/test/{d}/000.png")));
    let out = t.path().join("pred");
    let r = multiad::predict(&run, &imgs, &out, &mut quiet()).unwrap();
    assert_eq!(r.len(), 2);
    // Same file names in different folders get distinct heat maps.
    for d in ["hole", "stain"] {
        let heat = image::open(out.join(format!("{d}_000_heatmap.png"))).unwrap();
        assert_eq!((heat.width(), heat.height()), (64, 64));
    }
    // A finished run is never overwritten.
    let e = RunDir::create(&t.path().join("run"), &smoke_config(), &data).err().unwrap().to_string();
    assert!(e.contains("already holds a run"), "{e}");
}

#[test]
fn interrupted_training_resumes_to_the_same_weights() {
    multiad::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 1);
    let mut cfg = smoke_config();
    cfg.train.epochs = 4;
    // With random flips on, so that their draws are checked to resume exactly too
    // (some batches are flipped, some come from the teacher cache).
    cfg.train.flips = Flips::Both;
    let a = RunDir::create(&t.path().join("a"), &cfg, &data).unwrap();
    multiad::train(&a, TrainOptions::default(), &mut quiet()).unwrap();
    let b = RunDir::create(&t.path().join("b"), &cfg, &data).unwrap();
    let stopped = multiad::train(&b, TrainOptions { resume: false, stop_after_epochs: Some(2) }, &mut quiet()).unwrap();
    assert!(stopped.is_none() && !b.is_trained());
    multiad::train(&b, TrainOptions { resume: true, stop_after_epochs: None }, &mut quiet()).unwrap();
    let wa = candle_core::safetensors::load(a.path("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let wb = candle_core::safetensors::load(b.path("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(wa.len(), wb.len());
    for (k, ta) in &wa {
        let va: Vec<f32> = ta.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = wb[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, vb, "tensor {k} differs after resuming");
    }
    let ha = multiad::train::read_history(&a).unwrap();
    let hb = multiad::train::read_history(&b).unwrap();
    assert_eq!(ha.len(), 4);
    assert_eq!(ha.iter().map(|h| h.loss_s).collect::<Vec<_>>(), hb.iter().map(|h| h.loss_s).collect::<Vec<_>>());
    // The flips changed training: without them the losses differ.
    cfg.train.flips = Flips::None;
    let c = RunDir::create(&t.path().join("c"), &cfg, &data).unwrap();
    multiad::train(&c, TrainOptions::default(), &mut quiet()).unwrap();
    let hc = multiad::train::read_history(&c).unwrap();
    assert_ne!(ha.iter().map(|h| h.loss_g).collect::<Vec<_>>(), hc.iter().map(|h| h.loss_g).collect::<Vec<_>>());
}

/// The discriminator's schedule knobs (D every other batch, λ warm-up,
/// label smoothing, spectral normalisation with its power-iteration state in
/// the checkpoint) resume bit-identically and change what training does.
#[test]
fn discriminator_knobs_resume_exactly_and_change_training() {
    multiad::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 2);
    let mut cfg = smoke_config();
    cfg.train.epochs = 3;
    let plain = RunDir::create(&t.path().join("plain"), &cfg, &data).unwrap();
    multiad::train(&plain, TrainOptions::default(), &mut quiet()).unwrap();
    cfg.discriminator.update_every = 2;
    cfg.discriminator.lambda_warmup_epochs = 2;
    cfg.discriminator.label_smoothing = 0.1;
    cfg.discriminator.spectral_norm = true;
    let a = RunDir::create(&t.path().join("a"), &cfg, &data).unwrap();
    multiad::train(&a, TrainOptions::default(), &mut quiet()).unwrap();
    let b = RunDir::create(&t.path().join("b"), &cfg, &data).unwrap();
    multiad::train(&b, TrainOptions { resume: false, stop_after_epochs: Some(1) }, &mut quiet()).unwrap();
    multiad::train(&b, TrainOptions { resume: true, stop_after_epochs: None }, &mut quiet()).unwrap();
    let load = |r: &RunDir| candle_core::safetensors::load(r.path("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let (wa, wb) = (load(&a), load(&b));
    assert!(wa.keys().any(|k| k.ends_with("sn_u")), "the power-iteration state is saved");
    for (k, ta) in &wa {
        let va: Vec<f32> = ta.flatten_all().unwrap().to_vec1().unwrap();
        let vb: Vec<f32> = wb[k].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, vb, "tensor {k} differs after resuming");
    }
    let h = |r: &RunDir| multiad::train::read_history(r).unwrap().iter().map(|e| (e.loss_g, e.loss_d)).collect::<Vec<_>>();
    assert_eq!(h(&a), h(&b));
    assert_ne!(h(&a), h(&plain));
}

#[test]
fn a_diverging_run_stops_with_its_last_good_checkpoint_intact() {
    multiad::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 2);
    let mut cfg = smoke_config();
    cfg.train.epochs = 3;
    let run = RunDir::create(&t.path().join("run"), &cfg, &data).unwrap();
    multiad::train(&run, TrainOptions { resume: false, stop_after_epochs: Some(1) }, &mut quiet()).unwrap();
    let before = std::fs::read(run.path("checkpoint.safetensors")).unwrap();
    // The user raises the learning rate absurdly and resumes.
    cfg.train.lr = 1e30;
    cfg.train.disc_lr = 1e30;
    std::fs::write(run.path("config.yaml"), cfg.to_yaml()).unwrap();
    let e = multiad::train(&run, TrainOptions { resume: true, stop_after_epochs: None }, &mut quiet()).err().unwrap().to_string();
    assert!(e.contains("non-finite") && e.contains("checkpoint"), "{e}");
    assert_eq!(std::fs::read(run.path("checkpoint.safetensors")).unwrap(), before, "the checkpoint was touched");
    assert!(!run.is_trained());
}

#[test]
fn bad_configs_name_the_key() {
    let p = Path::new("exp.yaml");
    let base = std::fs::read_to_string(repo().join("experiments/smoke.yaml")).unwrap();
    let cases = [
        (base.replace("  lr: 0.001", "  lr: -0.5"), "train.lr"),
        (base.replace("image_size: 64", "image_size: 100"), "image_size"),
        (base.replace("  epochs: 12", "  epochs: 12\n  epoch_count: 3"), "epoch_count"),
        (base.replace("  lambda: 0.01", "  lambda: -1"), "discriminator.lambda"),
        (base.replace("  epochs: 12", "  epochs: 12\n  flips: diagonal"), "flips"),
    ];
    for (text, key) in cases {
        let e = ExperimentConfig::from_yaml_str(&text, p).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("exp.yaml"), "expected {key} in: {e}");
    }
    // Every shipped preset parses.
    for f in ["smoke", "cpu", "paper"] {
        ExperimentConfig::from_yaml_file(&repo().join(format!("experiments/{f}.yaml"))).unwrap();
    }
}

#[test]
fn a_checkpoint_with_a_missing_tensor_names_it() {
    multiad::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 3);
    let mut cfg = smoke_config();
    cfg.train.epochs = 1;
    let run = RunDir::create(&t.path().join("run"), &cfg, &data).unwrap();
    multiad::train(&run, TrainOptions::default(), &mut quiet()).unwrap();
    let p = run.path("model.safetensors");
    let mut w = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    w.remove("student.layer2.0.conv2.weight");
    candle_core::safetensors::save(&w, &p).unwrap();
    let e = multiad::evaluate::load_trained(&run).err().unwrap().to_string();
    assert!(e.contains("student.layer2.0.conv2.weight") && e.contains("model.safetensors"), "{e}");
}

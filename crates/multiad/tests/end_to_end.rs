//! Multi-AD end to end at the `smoke` scale: synthetic data, training,
//! testing; resumption; a diverging run; bad configs and checkpoints.

use std::path::{Path, PathBuf};

use candle_core::Device;
use multiad::config::Flips;
use multiad::{ExperimentConfig, MultiAd};
use multiad_detector::history::read_history;
use multiad_detector::testing::{assert_resume_matches, smoke_fit_test_reload};
use multiad_detector::ConfigFile;
use multiad_detector::{train_run, DataRef, FitOptions, FitOutcome, RunDir};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn smoke_config() -> ExperimentConfig {
    let p = repo().join("experiments/smoke.yaml");
    ExperimentConfig::from_yaml_file(&p).unwrap()
}

fn synthetic(dir: &Path, seed: u64) -> DataRef {
    multiad_detector::testing::synthetic_category(dir, seed).unwrap()
}

fn quiet() -> std::io::Sink {
    std::io::sink()
}

/// A new smoke-preset run of `epochs` epochs on the synthetic category of
/// `data_seed`, in `t`; its config for changes.
fn smoke_run(t: &Path, data_seed: u64, epochs: usize) -> (RunDir, ExperimentConfig) {
    let data = synthetic(&t.join("data"), data_seed);
    let mut cfg = smoke_config();
    cfg.train.epochs = epochs;
    (RunDir::create(&t.join("run"), &cfg, &data).unwrap(), cfg)
}

/// What `multiad train` does: the run's detector through the shared fit.
fn train(run: &RunDir, opts: FitOptions) -> anyhow::Result<FitOutcome> {
    let mut model = MultiAd::build(&run.read_config()?, &Device::Cpu)?;
    train_run(&mut model, run, opts, &mut quiet())
}

const STOP_AFTER_1: FitOptions = FitOptions { resume: false, stop_after_epochs: Some(1) };
const RESUME: FitOptions = FitOptions { resume: true, stop_after_epochs: None };

#[test]
fn smoke_preset_separates_synthetic_defects() {
    multiad_nn::set_default_threads();
    // Fitted, tested, clears the floors and reloads to the same maps.
    let smoke = smoke_fit_test_reload(MultiAd::build).unwrap();
    let t = &smoke.dir;
    let run = smoke.run;
    let model = multiad::load_trained(&run).unwrap();
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
    let r = multiad_detector::predict(&model, &run, &imgs, &out, None, &mut quiet()).unwrap();
    assert_eq!(r.len(), 2);
    // Same file names in different folders get distinct heat maps.
    for d in ["hole", "stain"] {
        let heat = image::open(out.join(format!("{d}_000_heatmap.png"))).unwrap();
        assert_eq!((heat.width(), heat.height()), (64, 64));
    }
    // A finished run is never overwritten.
    let e = RunDir::create(&t.path().join("run"), &smoke_config(), &run.data().unwrap()).err().unwrap().to_string();
    assert!(e.contains("already holds a run"), "{e}");
}

#[test]
fn interrupted_training_resumes_to_the_same_weights() {
    multiad_nn::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let mut cfg = smoke_config();
    cfg.train.epochs = 4;
    // With random flips on, so that their draws are checked to resume exactly too
    // (some batches are flipped, some come from the teacher cache).
    cfg.train.flips = Flips::Both;
    assert_resume_matches(&cfg, MultiAd::build, 0.0).unwrap();
    // The flips changed training: without them the losses differ.
    let data = synthetic(&t.path().join("data2"), 3);
    let losses = |cfg: &ExperimentConfig, name: &str| {
        let run = RunDir::create(&t.path().join(name), cfg, &data).unwrap();
        train(&run, FitOptions::default()).unwrap();
        read_history(&run).unwrap().iter().map(|h| h.loss_g).collect::<Vec<_>>()
    };
    let flipped = losses(&cfg, "flipped");
    cfg.train.flips = Flips::None;
    let plain = losses(&cfg, "plain");
    assert_ne!(flipped, plain);
    // So does the zoom, whose draws resume exactly too.
    cfg.train.zoom = 1.25;
    assert_resume_matches(&cfg, MultiAd::build, 0.0).unwrap();
    assert_ne!(losses(&cfg, "zoomed"), plain);
}

/// The discriminator's schedule knobs (D every other batch, λ warm-up,
/// label smoothing, spectral normalisation with its power-iteration state in
/// the checkpoint) resume bit-identically and change what training does.
#[test]
fn discriminator_knobs_resume_exactly_and_change_training() {
    multiad_nn::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 2);
    let mut cfg = smoke_config();
    cfg.train.epochs = 3;
    let history = |cfg: &ExperimentConfig, name: &str| {
        let run = RunDir::create(&t.path().join(name), cfg, &data).unwrap();
        train(&run, FitOptions::default()).unwrap();
        let w = candle_core::safetensors::load(run.path("model.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(w.keys().any(|k| k.ends_with("sn_u")), cfg.discriminator.spectral_norm, "the power-iteration state is saved");
        read_history(&run).unwrap().iter().map(|e| (e.loss_g, e.loss_d)).collect::<Vec<_>>()
    };
    let plain = history(&cfg, "plain");
    cfg.discriminator.update_every = 2;
    cfg.discriminator.lambda_warmup_epochs = 2;
    cfg.discriminator.label_smoothing = 0.1;
    cfg.discriminator.spectral_norm = true;
    assert_ne!(history(&cfg, "knobs"), plain);
    assert_resume_matches(&cfg, MultiAd::build, 0.0).unwrap();
}

/// `train.precise_bn` changes the student's batch-norm statistics and
/// nothing else (every trained weight bit-identical), and a resumed run
/// recomputes them as an uninterrupted one does.
#[test]
fn precise_bn_replaces_only_the_running_statistics_and_resumes_exactly() {
    multiad_nn::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let data = synthetic(&t.path().join("data"), 4);
    let mut cfg = smoke_config();
    cfg.train.epochs = 2;
    let weights = |cfg: &ExperimentConfig, name: &str| {
        let run = RunDir::create(&t.path().join(name), cfg, &data).unwrap();
        train(&run, FitOptions::default()).unwrap();
        candle_core::safetensors::load(run.path("model.safetensors"), &Device::Cpu).unwrap()
    };
    let running = weights(&cfg, "running");
    cfg.train.precise_bn = true;
    let precise = weights(&cfg, "precise");
    let mut changed = 0;
    for (name, a) in &running {
        let b = &precise[name];
        let same = a.flatten_all().unwrap().to_vec1::<f32>().unwrap() == b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let statistic = name.starts_with("student.") && (name.ends_with("running_mean") || name.ends_with("running_var"));
        if statistic {
            changed += usize::from(!same);
        } else {
            assert!(same, "{name} changed with precise_bn");
        }
    }
    assert!(changed > 10, "only {changed} student statistics changed");
    cfg.train.epochs = 3; // the resumption check stops after 2
    assert_resume_matches(&cfg, MultiAd::build, 0.0).unwrap();
}

#[test]
fn a_diverging_run_stops_with_its_last_good_checkpoint_intact() {
    multiad_nn::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let (run, mut cfg) = smoke_run(t.path(), 2, 3);
    train(&run, STOP_AFTER_1).unwrap();
    let before = std::fs::read(run.path("checkpoint.safetensors")).unwrap();
    // The user raises the learning rate absurdly and resumes.
    cfg.train.lr = 1e30;
    cfg.train.disc_lr = 1e30;
    std::fs::write(run.path("config.yaml"), cfg.to_yaml()).unwrap();
    let e = train(&run, RESUME).err().unwrap().to_string();
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
    multiad_nn::set_default_threads();
    let t = tempfile::tempdir().unwrap();
    let (run, _) = smoke_run(t.path(), 3, 1);
    train(&run, FitOptions::default()).unwrap();
    let p = run.path("model.safetensors");
    let mut w = candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    w.remove("student.layer2.0.conv2.weight");
    candle_core::safetensors::save(&w, &p).unwrap();
    let e = multiad::load_trained(&run).err().unwrap().to_string();
    assert!(e.contains("student.layer2.0.conv2.weight") && e.contains("model.safetensors"), "{e}");
}

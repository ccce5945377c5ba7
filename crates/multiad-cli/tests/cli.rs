//! The binary as a user runs it.

use std::process::Command;

fn multiad(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_multiad")).args(args).output().expect("run multiad");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        vec!["--help"],
        vec!["synth", "--help"],
        vec!["inspect", "--help"],
        vec!["train", "--help"],
        vec!["test", "--help"],
        vec!["predict", "--help"],
        vec!["fetch-weights", "--help"],
        vec!["prep", "brats2021", "--help"],
        vec!["prep", "liver", "--help"],
    ] {
        let (ok, out, _) = multiad(&sub);
        assert!(ok && out.contains("Usage"), "{sub:?}: {out}");
    }
}

#[test]
fn synth_then_inspect() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().to_str().unwrap();
    let (ok, stdout, stderr) = multiad(&["synth", "--out", out, "--category", "demo", "--seed", "1", "--size", "64", "--train", "5"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("5 train"), "{stdout}");
    let cat = t.path().join("demo");
    let (ok, stdout, stderr) = multiad(&["inspect", "--mvtec", cat.to_str().unwrap(), "--check", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["train"], 5);
    assert_eq!(v["test_anomalous"], 30);
    assert!(stderr.contains("all 55 images"), "{stderr}");
    // A second synth into the same place refuses rather than overwriting.
    let (ok, _, stderr) = multiad(&["synth", "--out", out, "--category", "demo"]);
    assert!(!ok && stderr.contains("already exists"), "{stderr}");
}

#[test]
fn bad_data_is_a_clear_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = multiad(&["inspect", "--mvtec", t.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.starts_with("error: ") && stderr.contains("train/good"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `multiad prep brats2021` on small volumes written here, then the result
/// read back as a BMAD directory.
#[test]
fn prep_brats_then_inspect() {
    let t = tempfile::tempdir().unwrap();
    let spec = multiad_nifti::WriteSpec::float([16, 16, 12]);
    for (split, id, tumour) in [("train", "p1", 5..7), ("train", "p2", 20..20), ("validation", "p3", 4..9), ("test", "p4", 3..6)] {
        let dir = t.path().join("raw").join(split).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let n = 16 * 16 * 12;
        let flair: Vec<f32> = (0..n).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
        let seg: Vec<f32> = (0..n)
            .map(|i| {
                let (x, k) = (i % 16, i / 256);
                if tumour.contains(&k) && (4..9).contains(&x) {
                    2.0
                } else {
                    0.0
                }
            })
            .collect();
        multiad_nifti::write(&dir.join(format!("{id}_flair.nii.gz")), &spec, &flair).unwrap();
        multiad_nifti::write(&dir.join(format!("{id}_seg.nii.gz")), &spec, &seg).unwrap();
    }
    let raw = t.path().join("raw");
    let out = t.path().join("bmad");
    let (ok, stdout, stderr) =
        multiad(&["prep", "brats2021", "--raw", raw.to_str().unwrap(), "--out", out.to_str().unwrap(), "--first-slice", "2", "--last-slice", "9"]);
    assert!(ok, "{stderr}");
    // p1: slices 2-9 minus 5,6 -> 6 train; p2: 8; p3: 4-8 tumour -> 3 good / 5 Ungood; p4: 3-5 -> 5 / 3.
    assert!(stdout.contains("train    2 patients     14 good"), "{stdout}");
    assert!(stdout.contains("valid    1 patients      3 good      5 Ungood"), "{stdout}");
    assert!(stdout.contains("test     1 patients      5 good      3 Ungood"), "{stdout}");
    let (ok, stdout, stderr) = multiad(&["inspect", "--dir", out.to_str().unwrap(), "--check", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((v["train"].as_u64(), v["test_normal"].as_u64(), v["test_anomalous"].as_u64()), (Some(14), Some(5), Some(3)));
    // Never overwritten; a missing directory is a clear error.
    let (ok, _, stderr) = multiad(&["prep", "brats2021", "--raw", raw.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok && stderr.contains("refusing to overwrite"), "{stderr}");
    let (ok, _, stderr) =
        multiad(&["prep", "liver", "--btcv", "/nonexistent/btcv", "--lits", "/nonexistent/lits", "--out", t.path().join("l").to_str().unwrap()]);
    assert!(!ok && stderr.contains("/nonexistent/btcv: directory not found"), "{stderr}");
}

/// A 64 px synthetic category `c` with `train` normal training images, in
/// a temporary directory: (the directory, the data root holding `c`).
fn synthetic_category(train: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let n = train.to_string();
    let (ok, _, stderr) = multiad(&["synth", "--out", data.to_str().unwrap(), "--category", "c", "--seed", "0", "--size", "64", "--train", &n]);
    assert!(ok, "{stderr}");
    (t, data)
}

/// A truncated image is found before the first epoch, with every other bad
/// file, not when its batch comes up; nothing is trained.
#[test]
fn train_lists_every_bad_training_image_before_the_first_epoch() {
    let (t, data) = synthetic_category(6);
    let good = data.join("c/train/good");
    let mut files: Vec<_> = std::fs::read_dir(&good).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in [&files[1], &files[4]] {
        let bytes = std::fs::read(f).unwrap();
        std::fs::write(f, &bytes[..bytes.len() / 2]).unwrap();
    }
    let run = t.path().join("run");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments/smoke.yaml");
    let (ok, _, stderr) = multiad(&["train", "--config", config, "--data", data.join("c").to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert!(!ok, "training on truncated images succeeded");
    for f in [&files[1], &files[4]] {
        assert!(stderr.contains(&f.file_name().unwrap().to_string_lossy().to_string()), "{f:?} not named: {stderr}");
    }
    assert!(stderr.contains("2 of 6 files failed"), "{stderr}");
    assert!(!stderr.contains("epoch 1"), "training started: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!run.join("model.safetensors").exists());
}

/// A device this build cannot use is refused with what to do, before
/// anything is written; a misspelt one names the choices; a trained run
/// tests on the device asked for.
#[test]
fn devices_are_checked_before_anything_is_written() {
    let (t, data) = synthetic_category(8);
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments/methods/padim/smoke.yaml");
    let run = t.path().join("run");
    let train =
        |device: &str| multiad(&["train", "--config", config, "--data", data.join("c").to_str().unwrap(), "--out", run.to_str().unwrap(), "--device", device]);
    let (ok, _, stderr) = train("gpu");
    assert!(!ok && stderr.contains("unknown device `gpu`") && stderr.contains("cuda:N"), "{stderr}");
    if !multiad_nn::device::CUDA_BUILT {
        let (ok, _, stderr) = train("cuda:1");
        assert!(!ok, "cuda:1 accepted by a CPU build");
        assert!(stderr.contains("smoke.yaml") && stderr.contains("--features cuda") && stderr.contains("--device cpu"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!run.exists(), "a run directory was left behind");
    }
    let (ok, _, stderr) = train("cpu");
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(run.join("config.yaml")).unwrap();
    assert!(text.contains("device: cpu"), "{text}");
    let (ok, stdout, stderr) = multiad(&["test", "--run", run.to_str().unwrap(), "--device", "cpu"]);
    assert!(ok && stdout.contains("image AUROC"), "{stderr}");
    if !multiad_nn::device::CUDA_BUILT {
        let (ok, _, stderr) = multiad(&["test", "--run", run.to_str().unwrap(), "--device", "cuda"]);
        assert!(!ok && stderr.contains("--features cuda") && !stderr.contains("panicked"), "{stderr}");
        let (ok, _, stderr) = multiad(&[
            "predict",
            "--run",
            run.to_str().unwrap(),
            "--out",
            t.path().join("heat").to_str().unwrap(),
            "--device",
            "cuda",
            data.join("c/test/good/000.png").to_str().unwrap(),
        ]);
        assert!(!ok && stderr.contains("--features cuda") && !stderr.contains("panicked"), "{stderr}");
    }
}

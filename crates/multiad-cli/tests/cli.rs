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
    ] {
        let (ok, out, _) = multiad(&sub);
        assert!(ok && out.contains("Usage"), "{sub:?}: {out}");
    }
}

#[test]
fn synth_then_inspect() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().to_str().unwrap();
    let (ok, stdout, stderr) =
        multiad(&["synth", "--out", out, "--category", "demo", "--seed", "1", "--size", "64", "--train", "5"]);
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

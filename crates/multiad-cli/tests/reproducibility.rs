//! What docs/reproducibility.md promises, as a user runs it: the same binary
//! on the same machine gives bit-identical weights and scores whatever the
//! number of threads (every parallel loop splits work by output, never a
//! reduction, and every random draw comes from the seed).

use std::path::Path;
use std::process::Command;

fn multiad(threads: usize, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_multiad")).args(args).env("RAYON_NUM_THREADS", threads.to_string()).output().expect("run multiad");
    assert!(out.status.success(), "multiad {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p).to_string_lossy().into_owned()
}

/// The scores column of scores.csv (the path column names the run's data).
fn scores(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("scores.csv")).unwrap();
    text.lines().map(|l| l.rsplit(',').next().unwrap().to_string()).collect()
}

#[test]
fn one_thread_and_two_threads_give_bit_identical_weights_and_scores() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let d = data.to_str().unwrap();
    multiad(1, &["synth", "--out", d, "--category", "tiles", "--seed", "0", "--size", "64", "--train", "32", "--test-good", "8", "--test-per-defect", "4"]);
    let cat = data.join("tiles");
    // Multi-AD and one baseline that trains by gradient descent.
    for (name, config, weights) in
        [("multiad", "experiments/smoke.yaml", "model.safetensors"), ("stfpm", "experiments/methods/stfpm/smoke.yaml", "model.safetensors")]
    {
        let runs: Vec<_> = [1, 2]
            .iter()
            .map(|&n| {
                let run = t.path().join(format!("{name}-{n}"));
                let r = run.to_str().unwrap();
                multiad(n, &["train", "--config", &repo(config), "--data", cat.to_str().unwrap(), "--out", r, "--epochs", "3"]);
                multiad(n, &["test", "--run", r]);
                run
            })
            .collect();
        let w: Vec<Vec<u8>> = runs.iter().map(|r| std::fs::read(r.join(weights)).unwrap()).collect();
        assert!(w[0] == w[1], "{name}: {weights} differs between 1 and 2 threads");
        assert_eq!(scores(&runs[0]), scores(&runs[1]), "{name}: scores differ between 1 and 2 threads");
    }
}

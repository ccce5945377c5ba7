//! `cargo xtask ablation --executor slurm` against a real Slurm: munged,
//! slurmctld and slurmd started on localhost by `scripts/slurm_local.sh`
//! (one node with this machine's cores, state in a temporary directory,
//! stopped at the end). Without Slurm installed, or without root, the test
//! prints `SKIPPED: <reason>`; with `MULTIAD_REQUIRE_SLURM=1` (set by
//! `.ci/run` once it has installed Slurm) a Slurm that does not start fails it.
//!
//! The tests that need no Slurm (a missing `sbatch`, the dry run, a sweep
//! directory of another configuration) always run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn xtask() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xtask"))
}

/// The `multiad` binary of this build: `cargo test --workspace` has built it
/// beside xtask; `cargo test -p xtask` alone builds it here.
fn multiad() -> PathBuf {
    let bin = xtask().with_file_name("multiad");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo).args(["build", "--quiet", "-p", "multiad-cli", "--bin", "multiad"]).current_dir(repo()).status().unwrap();
        assert!(ok.success(), "building multiad failed");
    }
    bin
}

/// One synthetic category, small (training takes a few seconds at 40 epochs).
fn data(root: &Path) {
    let out = Command::new(multiad())
        .args(["synth", "--category", "tiles", "--seed", "1", "--size", "64", "--train", "12", "--test-good", "4", "--test-per-defect", "2", "--out"])
        .arg(root.join("synthetic"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `cargo xtask ablation` on the synthetic `tiles` with three studies.
fn ablation(data_root: &Path, out: &Path, epochs: usize, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(xtask());
    cmd.args(["ablation", "--suite", "synthetic", "--preset", "smoke", "--datasets", "tiles", "--configs", "1,5,8", "--seed", "0", "--jobs", "2"])
        .arg("--epochs")
        .arg(epochs.to_string())
        .arg("--data-root")
        .arg(data_root)
        .arg("--out")
        .arg(out)
        .arg("--multiad")
        .arg(multiad())
        .args(extra)
        .current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A local Slurm for the length of a test.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Cluster {
    /// `Err(reason)` when Slurm is not there to start.
    fn start() -> Result<Cluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let script = repo().join("scripts/slurm_local.sh");
        let out = Command::new("bash").arg(&script).arg("start").arg(dir.path()).output().unwrap();
        let msg = text(&out);
        match out.status.code() {
            Some(0) => Ok(Cluster { conf: dir.path().join("slurm.conf"), dir }),
            Some(3) => Err(msg.trim().to_string()),
            _ if std::env::var("MULTIAD_REQUIRE_SLURM").is_ok_and(|v| v == "1") => panic!("the local Slurm did not start:\n{msg}"),
            _ => Err(format!("the local Slurm did not start: {}", msg.trim())),
        }
    }

    fn env(&self) -> [(&'static str, &str); 1] {
        [("SLURM_CONF", self.conf.to_str().unwrap())]
    }

    fn cmd(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().unwrap();
        assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until none of these jobs (array or plain) is in the queue.
    fn wait_gone(&self, ids: &[&str]) {
        let t0 = Instant::now();
        loop {
            let q = self.cmd("squeue", &["-h", "-r", "-o", "%i"]);
            if !q.lines().any(|l| ids.iter().any(|id| l.trim() == *id || l.trim().starts_with(&format!("{id}_")))) {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "jobs {ids:?} still queued:\n{q}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scancel").args(["-u", "root"]).env("SLURM_CONF", &self.conf).status();
        let _ = Command::new("bash").arg(repo().join("scripts/slurm_local.sh")).arg("stop").arg(self.dir.path()).status();
    }
}

fn submissions(out: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(out.join("slurm/submissions.json")).unwrap()).unwrap()
}

fn status(out: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(xtask());
    cmd.args(["sweep", "status"]).arg(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn state_of<'a>(status: &'a str, label: &str) -> &'a str {
    let line = status.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("{label} not in\n{status}"));
    line
}

#[test]
fn a_sweep_through_slurm_matches_the_local_executor_and_resumes_after_scancel() {
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            println!("SKIPPED: no local Slurm ({why})");
            return;
        }
    };
    let env = cluster.env();
    let t = tempfile::tempdir().unwrap();
    data(t.path());
    let epochs = 40;

    // The local executor's tables: what Slurm must reproduce.
    let local = t.path().join("local");
    let o = ablation(t.path(), &local, epochs, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));

    // Through Slurm: one array of three tasks, a collect job after it.
    let slurm = t.path().join("slurm");
    let args = ["--executor", "slurm", "--cpus-per-cell", "1"];
    let o = ablation(t.path(), &slurm, epochs, &args, &env);
    assert!(o.status.success(), "{}", text(&o));
    let subs = submissions(&slurm);
    assert_eq!(subs.len(), 1);
    let job = subs[0]["job_id"].as_str().unwrap().to_string();
    let collect = subs[0]["collect_job"].as_str().unwrap().to_string();
    assert_eq!(subs[0]["cells"], serde_json::json!(["tiles/study-1", "tiles/study-5", "tiles/study-8"]));
    let script = std::fs::read_to_string(slurm.join("slurm/array-1.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2%2") && script.contains("#SBATCH --cpus-per-task=1"), "{script}");

    // Cancel study 5's task mid-training: once it has a checkpoint, before
    // it has a trained model.
    let run5 = slurm.join("cells/tiles/study-5/run");
    let t0 = Instant::now();
    while !(run5.join("checkpoint.safetensors").is_file() || run5.join("training.json").is_file()) {
        assert!(t0.elapsed() < Duration::from_secs(300), "study 5 never started training");
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.cmd("scancel", &[&format!("{job}_1")]);
    let mid_training = !run5.join("training.json").is_file();
    assert!(mid_training, "study 5 finished training before it could be cancelled; make its training longer");
    cluster.wait_gone(&[&job, &collect]);
    let st = status(&slurm, &env);
    assert!(state_of(&st, "tiles/study-1").contains("done"), "{st}");
    assert!(state_of(&st, "tiles/study-8").contains("done"), "{st}");
    let line5 = state_of(&st, "tiles/study-5");
    assert!(line5.contains("interrupted") && line5.contains(&format!("{job}_1")), "{st}");
    // The collect job ran after the array and made no tables from a sweep
    // with an unfinished cell.
    assert!(!slurm.join("tables/table4.csv").exists());
    let collect_log = std::fs::read_to_string(slurm.join(format!("slurm/logs/collect-{collect}.out"))).unwrap();
    assert!(collect_log.contains("not every cell is done"), "{collect_log}");

    // The same command again resubmits only study 5, which resumes; its
    // collect job then makes the tables.
    let o = ablation(t.path(), &slurm, epochs, &args, &env);
    assert!(o.status.success(), "{}", text(&o));
    let subs = submissions(&slurm);
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[1]["cells"], serde_json::json!(["tiles/study-5"]));
    let (job2, collect2) = (subs[1]["job_id"].as_str().unwrap().to_string(), subs[1]["collect_job"].as_str().unwrap().to_string());
    cluster.wait_gone(&[&job2, &collect2]);
    let st = status(&slurm, &env);
    assert!(st.contains("3 cells: 3 done"), "{st}");
    let cell5: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(slurm.join("cells/tiles/study-5/cell.json")).unwrap()).unwrap();
    assert_eq!(cell5["train_invocations"], 2, "{cell5}");
    assert_eq!(cell5["runner"], format!("slurm:{job2}_0"));
    let log5 = std::fs::read_to_string(slurm.join("cells/tiles/study-5/train.log")).unwrap();
    assert!(log5.to_lowercase().contains("resum"), "{log5}");

    // Identical tables: same metrics for the same seeds.
    for f in ["tables/table4.csv", "tables/table4.md"] {
        assert_eq!(std::fs::read_to_string(slurm.join(f)).unwrap(), std::fs::read_to_string(local.join(f)).unwrap(), "{f}");
    }
    assert_eq!(multiad_sweep::tables::metric_rows(&slurm).unwrap(), multiad_sweep::tables::metric_rows(&local).unwrap());

    // Everything done: the command submits nothing and remakes the tables.
    let o = ablation(t.path(), &slurm, epochs, &args, &env);
    assert!(o.status.success() && text(&o).contains("0 submitted"), "{}", text(&o));
    assert_eq!(submissions(&slurm).len(), 2);

    // A failing array task: a training image that does not decode. The cell
    // is marked failed with its log, and the sweep's summary lists it.
    let bad_root = t.path().join("bad");
    data(&bad_root);
    let first = std::fs::read_dir(bad_root.join("synthetic/tiles/train/good")).unwrap().next().unwrap().unwrap().path();
    std::fs::write(&first, b"not a PNG").unwrap();
    let bad = t.path().join("bad-sweep");
    let o = ablation(&bad_root, &bad, 2, &["--executor", "slurm", "--cpus-per-cell", "1", "--wait"], &env);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("3 cells failed"), "{out}");
    let st = status(&bad, &env);
    let line = state_of(&st, "tiles/study-1");
    assert!(line.contains("failed") && line.contains("train.log"), "{st}");
    let cell: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bad.join("cells/tiles/study-1/cell.json")).unwrap()).unwrap();
    assert_eq!(cell["status"], "failed");
    assert!(cell["error"].as_str().unwrap().contains(first.file_name().unwrap().to_str().unwrap()), "{cell}");
}

#[test]
fn without_sbatch_the_slurm_executor_says_what_is_missing() {
    let t = tempfile::tempdir().unwrap();
    data(t.path());
    let empty = t.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let o = ablation(t.path(), &t.path().join("s"), 2, &["--executor", "slurm"], &[("PATH", empty.to_str().unwrap())]);
    assert!(!o.status.success());
    let msg = text(&o);
    assert!(msg.contains("`sbatch` is not on PATH"), "{msg}");
    assert!(!t.path().join("s").exists(), "nothing is written when nothing can be submitted");
}

#[test]
fn a_dry_run_prints_the_array_script_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    data(t.path());
    let out = t.path().join("dry");
    let args = [
        "--executor",
        "slurm",
        "--dry-run",
        "--partition",
        "gpu",
        "--time",
        "04:00:00",
        "--gpus-per-cell",
        "1",
        "--mem-per-cell",
        "16G",
        "--sbatch=--account=lab",
        "--sbatch",
        "#SBATCH --qos=long",
    ];
    let o = ablation(t.path(), &out, 2, &args, &[("PATH", "/usr/bin:/bin")]);
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8_lossy(&o.stdout);
    for line in [
        "#!/bin/bash",
        "#SBATCH --array=0-2%2",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=04:00:00",
        "#SBATCH --mem=16G",
        "#SBATCH --account=lab",
        "#SBATCH --qos=long",
        "'tiles/study-1'",
        "'tiles/study-8'",
        "sweep run-cell",
    ] {
        assert!(script.contains(line), "{line:?} missing from\n{script}");
    }
    assert!(!out.exists(), "a dry run wrote {}", out.display());

    // A benchmark goes the same way: a task per (data set, method).
    let mut cmd = Command::new(xtask());
    let o = cmd
        .args(["benchmark", "--suite", "synthetic", "--preset", "smoke", "--datasets", "tiles", "--executor", "slurm", "--dry-run", "--data-root"])
        .arg(t.path())
        .arg("--out")
        .arg(&out)
        .arg("--multiad")
        .arg(multiad())
        .env("PATH", "/usr/bin:/bin")
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(script.contains("#SBATCH --array=0-6%7") && script.contains("'tiles/patchcore'") && script.contains("'tiles/mkd'"), "{script}");
}

#[test]
fn a_sweep_directory_of_another_configuration_is_refused_by_both_executors() {
    let t = tempfile::tempdir().unwrap();
    data(t.path());
    let out = t.path().join("sweep");
    let o = ablation(t.path(), &out, 2, &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    for extra in [&[][..], &["--executor", "slurm", "--dry-run"][..]] {
        let o = ablation(t.path(), &out, 3, extra, &[]);
        let msg = text(&o);
        assert!(!o.status.success() && msg.contains("different configuration"), "{extra:?}: {msg}");
    }
}

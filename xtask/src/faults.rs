//! `cargo xtask faults`: fault injection against the `multiad` binary, the
//! way a user's machine fails.
//!
//! - kill -9 at random moments of `train` (every method), `test`, `prep` and
//!   an ablation sweep; the same command again (with `--resume` for a run
//!   that exists) must finish with the bytes of an uninterrupted run:
//!   weights, metrics, maps, prepared slices, sweep tables;
//! - a torn latest checkpoint: resumption falls back to the previous one,
//!   says so, and still ends with the uninterrupted run's weights;
//! - a full disk (a small tmpfs, when run as root): a clear error, and no
//!   file under a finished name;
//! - bad inputs (truncated, bit-flipped and emptied images, configs,
//!   checkpoints and NIfTI volumes) through the CLI: an error, never a panic.
//!
//! The summary counts kill points, losses, bad inputs and panics; any loss
//! or panic makes the command fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args)]
pub struct FaultArgs {
    /// Kill points per method in training (and per command for test/prep/sweep).
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Mutated files per kind of bad input.
    #[arg(long, default_value_t = 12)]
    bad_inputs: usize,
    /// Seeds the kill times and the mutations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Work directory (a temporary one by default; kept when given).
    #[arg(long)]
    work: Option<PathBuf>,
    /// The multiad binary (default: beside this xtask binary).
    #[arg(long)]
    multiad: Option<PathBuf>,
}

/// What one `multiad` call came to.
enum Ended {
    Exited(Output),
    Killed,
}

struct Harness {
    bin: PathBuf,
    repo: PathBuf,
    work: PathBuf,
    rng: ChaCha8Rng,
    kills: usize,
    losses: Vec<String>,
    bad_tried: usize,
    bad_refused: usize,
    panics: Vec<String>,
}

pub fn run(a: FaultArgs) -> Result<()> {
    let repo = crate::repo_root();
    let bin = match a.multiad {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("multiad"),
    };
    if !bin.is_file() {
        bail!("{}: no multiad binary; build it first with `cargo build -p multiad-cli`", bin.display());
    }
    let tmp;
    let work = match a.work {
        Some(w) => {
            std::fs::create_dir_all(&w)?;
            w
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut h = Harness { bin, repo, work, rng: ChaCha8Rng::seed_from_u64(a.seed), kills: 0, losses: vec![], bad_tried: 0, bad_refused: 0, panics: vec![] };
    let data = h.work.join("data/faults");
    h.ok(&[
        "synth",
        "--out",
        &s(&h.work.join("data")),
        "--category",
        "faults",
        "--seed",
        "0",
        "--size",
        "64",
        "--train",
        "24",
        "--test-good",
        "8",
        "--test-per-defect",
        "4",
    ])?;

    for (method, config) in [
        ("multiad", "experiments/smoke.yaml"),
        ("stfpm", "experiments/methods/stfpm/smoke.yaml"),
        ("rd4ad", "experiments/methods/rd4ad/smoke.yaml"),
        ("simplenet", "experiments/methods/simplenet/smoke.yaml"),
        ("mkd", "experiments/methods/mkd/smoke.yaml"),
        ("padim", "experiments/methods/padim/smoke.yaml"),
        ("patchcore", "experiments/methods/patchcore/smoke.yaml"),
    ] {
        h.kill_training(method, &h.repo.join(config), &data, a.kills)?;
    }
    h.kill_test(a.kills)?;
    h.kill_prep(a.kills)?;
    h.kill_sweep(a.kills)?;
    h.torn_checkpoint(&data)?;
    h.full_disk(&data)?;
    h.bad_inputs(&data, a.bad_inputs)?;

    println!();
    println!("fault injection summary (seed {}):", a.seed);
    println!("  {} kill points, {} losses", h.kills, h.losses.len());
    println!("  {} bad inputs tried, {} refused with an error, {} panics", h.bad_tried, h.bad_refused, h.panics.len());
    for l in &h.losses {
        println!("  LOSS: {l}");
    }
    for p in &h.panics {
        println!("  PANIC: {p}");
    }
    if !h.losses.is_empty() || !h.panics.is_empty() {
        bail!("{} losses and {} panics", h.losses.len(), h.panics.len());
    }
    Ok(())
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A panic: Rust's exit status 101, or its message on stderr.
fn panicked(o: &Output) -> bool {
    o.status.code() == Some(101) || String::from_utf8_lossy(&o.stderr).contains("panicked at")
}

impl Harness {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).current_dir(&self.repo).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// Runs to the end; an error with its stderr unless it succeeded.
    fn ok(&self, args: &[&str]) -> Result<Output> {
        let o = self.cmd(args).output().with_context(|| format!("running {}", self.bin.display()))?;
        if !o.status.success() {
            bail!("`multiad {}` failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
        }
        Ok(o)
    }

    /// Runs `cmd`, sending SIGKILL after `after` unless it ended before.
    fn run_killed(mut cmd: Command, after: Duration) -> Result<Ended> {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        let t0 = Instant::now();
        loop {
            if child.try_wait()?.is_some() {
                return Ok(Ended::Exited(child.wait_with_output()?));
            }
            if t0.elapsed() >= after {
                child.kill()?; // SIGKILL on Unix
                child.wait()?;
                return Ok(Ended::Killed);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Seconds of one uninterrupted call, for drawing kill times.
    fn timed(&self, args: &[&str]) -> Result<f64> {
        let t0 = Instant::now();
        self.ok(args)?;
        Ok(t0.elapsed().as_secs_f64())
    }

    fn kill_time(&mut self, span: f64) -> Duration {
        Duration::from_secs_f64(self.rng.random_range(0.0..span.max(0.05)))
    }

    fn compare(&mut self, what: &str, a: &Path, b: &Path) {
        match (std::fs::read(a), std::fs::read(b)) {
            (Ok(x), Ok(y)) if x == y => {}
            (Ok(_), Ok(_)) => self.losses.push(format!("{what}: {} differs from {}", b.display(), a.display())),
            (_, Err(e)) => self.losses.push(format!("{what}: {} is missing ({e})", b.display())),
            (Err(e), _) => self.losses.push(format!("{what}: reference {} is missing ({e})", a.display())),
        }
    }

    /// metrics.json without the fields that time and memory change.
    fn metrics(path: &Path) -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let mut v: serde_json::Value = serde_json::from_str(&text)?;
        if let Some(m) = v.as_object_mut() {
            m.remove("seconds");
            m.remove("peak_rss_mib");
        }
        Ok(v)
    }

    fn compare_metrics(&mut self, what: &str, reference: &Path, run: &Path) {
        match (Self::metrics(&reference.join("metrics.json")), Self::metrics(&run.join("metrics.json"))) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => self.losses.push(format!("{what}: metrics of {} differ from the uninterrupted run's", run.display())),
            (_, Err(e)) | (Err(e), _) => self.losses.push(format!("{what}: {e:#}")),
        }
    }

    /// Re-runs `train` the way a user would after a crash: `--resume` when
    /// the run directory exists, the original command when it does not.
    fn finish_training(&mut self, what: &str, fresh: &[&str], run: &Path) -> Result<()> {
        if run.join("training.json").is_file() {
            return Ok(()); // killed after it had finished: nothing to redo
        }
        let run_s = s(run);
        let args: Vec<&str> = if run.join("config.yaml").is_file() { vec!["train", "--out", &run_s, "--resume"] } else { fresh.to_vec() };
        let o = self.cmd(&args).output()?;
        if !o.status.success() {
            self.losses.push(format!("{what}: the re-run `multiad {}` failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim()));
        }
        Ok(())
    }

    fn kill_training(&mut self, method: &str, config: &Path, data: &Path, kills: usize) -> Result<()> {
        let dir = self.work.join("train").join(method);
        let reference = dir.join("reference");
        let (config, data_s, ref_s) = (s(config), s(data), s(&reference));
        let span = self.timed(&["train", "--config", &config, "--data", &data_s, "--out", &ref_s])?;
        self.ok(&["test", "--run", &ref_s])?;
        let mut hit = Vec::new();
        for k in 0..kills {
            let run = dir.join(format!("killed-{k}"));
            let run_s = s(&run);
            let fresh = ["train", "--config", &config, "--data", &data_s, "--out", &run_s];
            let after = self.kill_time(span);
            let ended = Self::run_killed(self.cmd(&fresh), after)?;
            if let Ended::Exited(o) = &ended {
                if !o.status.success() {
                    self.losses.push(format!("{method}: training failed before its kill: {}", String::from_utf8_lossy(&o.stderr).trim()));
                    continue;
                }
            }
            self.kills += 1;
            hit.push(stage(&run));
            let what = format!("{method} killed at {:.2}s", after.as_secs_f64());
            self.finish_training(&what, &fresh, &run)?;
            self.compare(&what, &reference.join("model.safetensors"), &run.join("model.safetensors"));
            if self.ok(&["test", "--run", &run_s]).is_ok() {
                self.compare_metrics(&what, &reference, &run);
            } else {
                self.losses.push(format!("{what}: `multiad test` failed after the re-run"));
            }
        }
        println!("{method:<10} training {span:.1}s; killed {} times, at: {}", hit.len(), hit.join(", "));
        Ok(())
    }

    fn kill_test(&mut self, kills: usize) -> Result<()> {
        let reference = self.work.join("train/multiad/reference");
        let ref_s = s(&reference);
        let span = self.timed(&["test", "--run", &ref_s, "--save-maps"])?;
        let mut done = 0;
        for k in 0..kills {
            let run = self.work.join(format!("test/killed-{k}"));
            copy_dir(&reference, &run, &["metrics.json", "scores.csv", "maps.npy"])?;
            let run_s = s(&run);
            let after = self.kill_time(span);
            Self::run_killed(self.cmd(&["test", "--run", &run_s, "--save-maps"]), after)?;
            self.kills += 1;
            done += 1;
            let what = format!("test killed at {:.2}s", after.as_secs_f64());
            self.ok(&["test", "--run", &run_s, "--save-maps"])?;
            self.compare_metrics(&what, &reference, &run);
            self.compare(&what, &reference.join("maps.npy"), &run.join("maps.npy"));
            self.compare(&what, &reference.join("scores.csv"), &run.join("scores.csv"));
        }
        println!("test       {span:.2}s; killed {done} times");
        Ok(())
    }

    /// Two tiny BraTS-style patients, then kills of `prep brats2021`.
    fn kill_prep(&mut self, kills: usize) -> Result<()> {
        let raw = self.work.join("prep/raw");
        write_brats_patients(&raw)?;
        let reference = self.work.join("prep/reference");
        let (raw_s, ref_s) = (s(&raw), s(&reference));
        let args = |out: &str| -> Vec<String> {
            [
                "prep",
                "brats2021",
                "--raw",
                &raw_s,
                "--out",
                out,
                "--first-slice",
                "0",
                "--last-slice",
                "15",
                "--split",
                "random",
                "--valid-fraction",
                "0.0",
                "--test-fraction",
                "0.5",
            ]
            .iter()
            .map(|x| x.to_string())
            .collect()
        };
        let ref_args = args(&ref_s);
        let ref_args: Vec<&str> = ref_args.iter().map(String::as_str).collect();
        let span = self.timed(&ref_args)?;
        let mut done = 0;
        for k in 0..kills {
            let out = self.work.join(format!("prep/killed-{k}"));
            let a = args(&s(&out));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let after = self.kill_time(span);
            Self::run_killed(self.cmd(&a), after)?;
            self.kills += 1;
            done += 1;
            let what = format!("prep killed at {:.3}s", after.as_secs_f64());
            if !out.exists() {
                self.ok(&a)?;
            }
            let (x, y) = (tree(&reference)?, tree(&out)?);
            if x.len() != y.len() {
                self.losses.push(format!("{what}: {} files, the uninterrupted prep wrote {}", y.len(), x.len()));
            }
            for rel in &x {
                let rel = rel.as_path();
                if rel == Path::new("prep.json") {
                    // The report names its own output directory.
                    let read = |d: &Path| std::fs::read_to_string(d.join(rel)).map(|t| t.replace(&s(d), "OUT")).unwrap_or_default();
                    if read(&reference) != read(&out) {
                        self.losses.push(format!("{what}: {} differs from the uninterrupted prep's", out.join(rel).display()));
                    }
                    continue;
                }
                self.compare(&what, &reference.join(rel), &out.join(rel));
            }
        }
        println!("prep       {span:.2}s; killed {done} times");
        Ok(())
    }

    /// Kills of `cargo xtask ablation` (this binary) on a synthetic category.
    fn kill_sweep(&mut self, kills: usize) -> Result<()> {
        let root = self.work.join("sweep/data");
        self.ok(&[
            "synth",
            "--out",
            &s(&root.join("synthetic")),
            "--category",
            "tiles",
            "--seed",
            "1",
            "--size",
            "64",
            "--train",
            "24",
            "--test-good",
            "8",
            "--test-per-defect",
            "4",
        ])?;
        let xtask = std::env::current_exe()?;
        let (bin, repo) = (self.bin.clone(), self.repo.clone());
        let sweep = |out: &Path| {
            let mut c = Command::new(&xtask);
            c.args(["ablation", "--suite", "synthetic", "--preset", "smoke", "--datasets", "tiles", "--configs", "1,4", "--jobs", "1", "--seed", "0"])
                .arg("--data-root")
                .arg(&root)
                .arg("--out")
                .arg(out)
                .arg("--multiad")
                .arg(&bin)
                .current_dir(&repo)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            c
        };
        use std::os::unix::process::CommandExt;
        let reference = self.work.join("sweep/reference");
        let t0 = Instant::now();
        let o = sweep(&reference).output()?;
        if !o.status.success() {
            bail!("the reference sweep failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let span = t0.elapsed().as_secs_f64();
        let mut done = 0;
        for k in 0..kills {
            let out = self.work.join(format!("sweep/killed-{k}"));
            let after = self.kill_time(span);
            // The sweep's children share its process group: kill them all.
            let mut child = sweep(&out).spawn()?;
            let t = Instant::now();
            while child.try_wait()?.is_none() && t.elapsed() < after {
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait()?.is_none() {
                Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status()?;
            }
            child.wait()?;
            self.kills += 1;
            done += 1;
            let what = format!("sweep killed at {:.2}s", after.as_secs_f64());
            let o = sweep(&out).output()?;
            if !o.status.success() {
                self.losses.push(format!("{what}: the re-run failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
                continue;
            }
            let (a, b) = (multiad_sweep::tables::metric_rows(&reference)?, multiad_sweep::tables::metric_rows(&out).unwrap_or_default());
            if a != b {
                self.losses.push(format!("{what}: the sweep table differs from the uninterrupted one:\n{a:?}\n{b:?}"));
            }
        }
        println!("sweep      {span:.1}s; killed {done} times");
        Ok(())
    }

    /// Stops a Multi-AD run after its second checkpoint, tears the latest
    /// one, and resumes: the previous checkpoint must carry it to the end.
    fn torn_checkpoint(&mut self, data: &Path) -> Result<()> {
        let reference = self.work.join("train/multiad/reference");
        let run = self.work.join("torn");
        let (config, data_s, run_s) = (s(&self.repo.join("experiments/smoke.yaml")), s(data), s(&run));
        let mut child = self.cmd(&["train", "--config", &config, "--data", &data_s, "--out", &run_s]).spawn()?;
        let t0 = Instant::now();
        while !run.join("checkpoint.prev.safetensors").is_file() && child.try_wait()?.is_none() && t0.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill()?;
        child.wait()?;
        let latest = run.join("checkpoint.safetensors");
        if run.join("training.json").is_file() || !latest.is_file() {
            self.losses.push("torn checkpoint: training ended before it could be torn (raise train.epochs in experiments/smoke.yaml)".into());
            return Ok(());
        }
        let len = std::fs::metadata(&latest)?.len();
        std::fs::OpenOptions::new().write(true).open(&latest)?.set_len(len / 2)?;
        let o = self.cmd(&["train", "--out", &run_s, "--resume"]).output()?;
        let err = String::from_utf8_lossy(&o.stderr);
        self.kills += 1;
        if !o.status.success() {
            self.losses.push(format!("torn checkpoint: resumption failed: {}", err.trim()));
        } else if !err.contains("resuming from the previous one") {
            self.losses.push("torn checkpoint: resumption did not say it fell back to the previous checkpoint".into());
        }
        self.compare("torn checkpoint", &reference.join("model.safetensors"), &run.join("model.safetensors"));
        println!("torn checkpoint: fell back to checkpoint.prev.safetensors, {}", if o.status.success() { "finished" } else { "FAILED" });
        Ok(())
    }

    /// Training and testing onto a tmpfs too small for them.
    fn full_disk(&mut self, data: &Path) -> Result<()> {
        let mnt = self.work.join("full");
        std::fs::create_dir_all(&mnt)?;
        let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"]).arg(&mnt).stderr(Stdio::null()).status();
        if !mounted.is_ok_and(|st| st.success()) {
            println!("SKIPPED: full disk: cannot mount a tmpfs (needs root)");
            return Ok(());
        }
        let result = (|| -> Result<()> {
            let run = mnt.join("run");
            let (config, data_s, run_s) = (s(&self.repo.join("experiments/smoke.yaml")), s(data), s(&run));
            let o = self.cmd(&["train", "--config", &config, "--data", &data_s, "--out", &run_s]).output()?;
            self.check_full("train", &o, &run, &["training.json", "model.safetensors"]);
            // A trained run copied onto a disk with room for it and little more.
            let _ = std::fs::remove_dir_all(&run);
            copy_dir(
                &self.work.join("train/multiad/reference"),
                &run,
                &["metrics.json", "scores.csv", "maps.npy", "checkpoint.safetensors", "checkpoint.prev.safetensors", "history.jsonl"],
            )?;
            fill(&mnt, 64 * 1024)?;
            let o = self.cmd(&["test", "--run", &run_s, "--save-maps"]).output()?;
            // metrics.json, written last, is what marks a run as tested.
            self.check_full("test", &o, &run, &["metrics.json"]);
            Ok(())
        })();
        let _ = Command::new("umount").arg(&mnt).status();
        result
    }

    fn check_full(&mut self, what: &str, o: &Output, run: &Path, finished: &[&str]) {
        let err = String::from_utf8_lossy(&o.stderr);
        self.bad_tried += 1;
        if panicked(o) {
            self.panics.push(format!("full disk, {what}: {}", err.trim()));
            return;
        }
        if o.status.success() {
            self.losses.push(format!("full disk, {what}: succeeded on a full disk?"));
            return;
        }
        self.bad_refused += 1;
        if !err.contains("No space left") {
            self.losses.push(format!("full disk, {what}: the error does not say the disk is full: {}", err.trim()));
        }
        for f in finished {
            if run.join(f).exists() {
                self.losses.push(format!("full disk, {what}: {} exists after the failure", run.join(f).display()));
            }
        }
        let leftovers: Vec<String> = std::fs::read_dir(run)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-") || n.starts_with(".checkpoint.next"))
            .collect();
        if !leftovers.is_empty() {
            self.losses.push(format!("full disk, {what}: temporary files left behind: {leftovers:?}"));
        }
        // Progress lines end in \r, not \n: the error follows the last "error: ".
        println!("full disk, {what}: refused with \"{}\"", err.trim().rsplit("error: ").next().unwrap_or(""));
    }

    /// Mutated copies of real inputs through the commands that read them.
    fn bad_inputs(&mut self, data: &Path, n: usize) -> Result<()> {
        let base = self.work.join("bad");
        // Images: one training image of a copy of the data set, `inspect --check`.
        let image = data.join("train/good/000.png");
        let png = std::fs::read(&image)?;
        for k in 0..n {
            let ds = base.join(format!("image-{k}/faults"));
            copy_dir(data, &ds, &[])?;
            std::fs::write(ds.join("train/good/000.png"), self.mutate(&png))?;
            self.expect_error_or_success("image", &["inspect", "--dir", &s(&ds), "--check"]);
        }
        // Configs: the smoke preset mutated; `train` must refuse or start.
        let yaml = std::fs::read(self.repo.join("experiments/smoke.yaml"))?;
        for k in 0..n {
            let cfg = base.join(format!("config-{k}.yaml"));
            std::fs::write(&cfg, self.mutate(&yaml))?;
            let out = base.join(format!("config-run-{k}"));
            let mut c = self.cmd(&["train", "--config", &s(&cfg), "--data", &s(data), "--out", &s(&out), "--epochs", "1"]);
            c.stdout(Stdio::null());
            self.bad_tried += 1;
            match Self::run_killed(c, Duration::from_secs(60))? {
                Ended::Exited(o) if panicked(&o) => self.panics.push(format!("config {}: {}", cfg.display(), String::from_utf8_lossy(&o.stderr).trim())),
                Ended::Exited(o) if !o.status.success() => self.bad_refused += 1,
                _ => {} // the mutation left a valid config
            }
        }
        // Checkpoints: a mutated latest (and no previous) checkpoint, `--resume`.
        let ckpt = std::fs::read(self.work.join("train/multiad/killed-0/checkpoint.safetensors"))
            .or_else(|_| std::fs::read(self.work.join("torn/checkpoint.prev.safetensors")))?;
        let reference = self.work.join("train/multiad/reference");
        for k in 0..n {
            let run = base.join(format!("ckpt-{k}"));
            copy_dir(
                &reference,
                &run,
                &["training.json", "model.safetensors", "fusion.json", "metrics.json", "scores.csv", "maps.npy", "checkpoint.prev.safetensors"],
            )?;
            std::fs::write(run.join("checkpoint.safetensors"), self.mutate(&ckpt))?;
            self.expect_error_or_success("checkpoint", &["train", "--out", &s(&run), "--resume"]);
        }
        // NIfTI: a mutated FLAIR volume, `prep brats2021`.
        let raw = self.work.join("prep/raw");
        let flair = std::fs::read(raw.join("pat0/pat0_flair.nii.gz"))?;
        let plain = gunzip(&flair)?;
        for k in 0..n {
            let r = base.join(format!("nifti-{k}/raw"));
            copy_dir(&raw, &r, &[])?;
            let bytes = if k % 2 == 0 { self.mutate(&plain) } else { self.mutate(&flair) };
            std::fs::write(r.join("pat0/pat0_flair.nii.gz"), bytes)?;
            self.expect_error_or_success(
                "nifti",
                &["prep", "brats2021", "--raw", &s(&r), "--out", &s(&base.join(format!("nifti-{k}/out"))), "--first-slice", "0", "--last-slice", "15"],
            );
        }
        println!("bad inputs: {} tried, {} refused with an error, {} panics", self.bad_tried, self.bad_refused, self.panics.len());
        Ok(())
    }

    /// Truncation, random byte flips, an empty file or text, by turns.
    fn mutate(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.to_vec();
        match self.rng.random_range(0..4) {
            0 => b.truncate(self.rng.random_range(0..b.len().max(1))),
            1 => {
                for _ in 0..self.rng.random_range(1..16) {
                    let i = self.rng.random_range(0..b.len().max(1));
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << self.rng.random_range(0..8);
                    }
                }
            }
            2 => b.clear(),
            _ => {
                // A header field set to a huge value: bytes 16.. hold sizes in PNG and NIfTI.
                let i = self.rng.random_range(0..b.len().clamp(1, 64));
                for j in i..(i + 4).min(b.len()) {
                    b[j] = 0x7f;
                }
            }
        }
        b
    }

    /// The command must fail with an error (a mutation can leave a valid
    /// file: then success is fine too), and never panic.
    fn expect_error_or_success(&mut self, what: &str, args: &[&str]) {
        self.bad_tried += 1;
        match self.cmd(args).output() {
            Ok(o) if panicked(&o) => self.panics.push(format!("{what}: `multiad {}`: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())),
            Ok(o) if !o.status.success() => self.bad_refused += 1,
            Ok(_) => {}
            Err(e) => self.panics.push(format!("{what}: could not run: {e}")),
        }
    }
}

/// Where a killed run stood: what its directory held.
fn stage(run: &Path) -> String {
    if !run.join("config.yaml").is_file() {
        return "before the run existed".into();
    }
    if run.join("training.json").is_file() {
        return "after training".into();
    }
    match std::fs::read_to_string(run.join("history.jsonl")) {
        Ok(h) => format!("after epoch {}", h.lines().count()),
        Err(_) => "before the first epoch or fit ended".into(),
    }
}

/// Copies `from` into `to` (recursively), leaving out top-level names in `skip`.
fn copy_dir(from: &Path, to: &Path, skip: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if skip.iter().any(|s| name.to_str() == Some(s)) {
            continue;
        }
        let dest = to.join(&name);
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest, &[])?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

/// Every file under `root`, relative and sorted.
fn tree(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else {
                out.push(p.strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Fills a filesystem until `leave` bytes or fewer are free.
fn fill(dir: &Path, leave: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("ballast"))?;
    let chunk = vec![0u8; 16 * 1024];
    loop {
        let out = Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output()?;
        let avail: u64 = String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap_or(0);
        if avail <= leave || f.write_all(&chunk).is_err() {
            return Ok(());
        }
        f.flush()?;
    }
}

fn gunzip(b: &[u8]) -> Result<Vec<u8>> {
    let tmp = tempfile::NamedTempFile::new()?;
    std::fs::write(tmp.path(), b)?;
    let o = Command::new("gzip").arg("-dc").arg(tmp.path()).output()?;
    if !o.status.success() {
        bail!("gzip -dc failed");
    }
    Ok(o.stdout)
}

/// Two patients of 16 axial slices (32x32), a bright blob as tumour in the
/// upper half of each, as BraTS2021 names its files.
fn write_brats_patients(raw: &Path) -> Result<()> {
    for p in 0..2 {
        let dir = raw.join(format!("pat{p}"));
        std::fs::create_dir_all(&dir)?;
        let n = [32usize, 32, 16];
        let mut flair = vec![0f32; n[0] * n[1] * n[2]];
        let mut seg = vec![0f32; flair.len()];
        for k in 0..n[2] {
            for j in 0..n[1] {
                for i in 0..n[0] {
                    let at = i + n[0] * (j + n[1] * k);
                    let (x, y) = (i as f32 - 16.0, j as f32 - 16.0);
                    flair[at] = if x * x + y * y < 144.0 { 100.0 + ((i * 7 + j * 3 + k + p) % 11) as f32 } else { 0.0 };
                    let tumour = k >= 8 && (x - 3.0).powi(2) + y * y < 9.0;
                    if tumour {
                        flair[at] += 80.0;
                        seg[at] = 1.0;
                    }
                }
            }
        }
        multiad_nifti::write(&dir.join(format!("pat{p}_flair.nii.gz")), &multiad_nifti::WriteSpec::float(n), &flair)?;
        multiad_nifti::write(&dir.join(format!("pat{p}_seg.nii.gz")), &multiad_nifti::WriteSpec::float(n), &seg)?;
    }
    Ok(())
}

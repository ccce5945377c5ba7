//! Running a plan: each cell as `multiad` child processes, `--jobs` at a time,
//! skipping finished cells and resuming interrupted ones.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use multiad_detector::write_atomic;

use crate::cell_state::{heatmap_images, read_state, stage, write_state, CellState, Stage};
use crate::machine::Provenance;
use crate::plan::{Cell, Plan};

/// A child process that failed; `log` is where its output went.
#[derive(Debug)]
struct ChildFailed {
    log: PathBuf,
    message: String,
    /// The signal that ended it, when one did.
    signal: Option<i32>,
}

impl ChildFailed {
    /// Stopped from outside (scancel, preemption, a time limit, Ctrl-C):
    /// the cell is interrupted, not failed, and resumes on the next run.
    fn interrupted(&self) -> bool {
        matches!(self.signal, Some(1 | 2 | 9 | 15))
    }
}

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChildFailed {}

/// Runs `bin args`, appending its output to `log`; an error quotes the log's tail.
fn child(bin: &Path, args: &[String], threads: usize, log: &Path) -> Result<f64> {
    let t = Instant::now();
    let f = OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("{}", log.display()))?;
    let status = Command::new(bin)
        .args(args)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .stdout(f.try_clone()?)
        .stderr(f)
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let message = format!("`multiad {}` failed ({status}); last lines of {}:\n{}", args.join(" "), log.display(), tail.join("\n"));
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        return Err(ChildFailed { log: log.to_path_buf(), message, signal }.into());
    }
    Ok(t.elapsed().as_secs_f64())
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `--mlflow ...` for a cell's children when the sweep logs to MLflow.
fn mlflow_args(plan: &Plan, cell: &Cell) -> Vec<String> {
    plan.args.mlflow.as_ref().map(|t| t.child_args(&cell.label())).unwrap_or_default()
}

/// Checks that a cell directory holds no other plan's inputs and, when
/// `write`, writes the cell's `config.yaml` and `dataset.yaml`. A cell's
/// inputs are written once; a different plan for the same cell is refused
/// rather than mixed into finished results.
pub fn prepare_cell(cell: &Cell, write: bool) -> Result<()> {
    let cfg_path = cell.dir.join("config.yaml");
    if cfg_path.is_file() {
        let existing = multiad_methods::parse_file(&cfg_path, Default::default())?;
        if existing != cell.config {
            bail!("{} was run with a different configuration (preset, epochs or seed changed?); choose another --out", cell.dir.display());
        }
    }
    if write {
        std::fs::create_dir_all(&cell.dir).with_context(|| format!("creating {}", cell.dir.display()))?;
        if !cfg_path.is_file() {
            write_atomic(&cfg_path, cell.config.to_yaml().as_bytes())?;
        }
        write_atomic(&cell.dir.join("dataset.yaml"), serde_yaml_ng::to_string(&cell.spec)?.as_bytes())?;
    }
    Ok(())
}

/// Checks every cell of `plan` (see [`prepare_cell`]) before anything runs.
pub fn check_cells(plan: &Plan) -> Result<()> {
    plan.cells.iter().try_for_each(|c| prepare_cell(c, false))
}

fn run_cell(plan: &Plan, cell: &Cell, bin: &Path, threads: usize, prov: &Provenance, runner: &str) -> Result<CellState> {
    prepare_cell(cell, true)?;
    let cfg_path = cell.dir.join("config.yaml");
    let data_path = cell.dir.join("dataset.yaml");
    let mut state = read_state(cell).unwrap_or_default();
    state.label = cell.label();
    state.threads = threads;
    state.provenance = Some(prov.clone());
    state.runner = Some(runner.to_string());
    state.status = "running".into();
    state.error = None;
    state.log = None;
    write_state(cell, &state)?;
    let run = cell.run_dir();
    let st = stage(cell);
    if matches!(st, Stage::Fresh | Stage::Interrupted) {
        let args: Vec<String> = if st == Stage::Fresh {
            if run.exists() {
                std::fs::remove_dir_all(&run).ok(); // an empty or config-less start of a run
            }
            ["train", "--config", &s(&cfg_path), "--data", &s(&data_path), "--data-root", &s(&plan.data_root), "--out", &s(&run)].map(String::from).to_vec()
        } else {
            ["train", "--resume", "--out", &s(&run)].map(String::from).to_vec()
        };
        let args: Vec<String> = args.into_iter().chain(mlflow_args(plan, cell)).collect();
        state.train_invocations += 1;
        write_state(cell, &state)?; // a killed invocation still counts
        let secs = child(bin, &args, threads, &cell.dir.join("train.log"))?;
        state.train_seconds += secs;
        write_state(cell, &state)?;
    }
    if stage(cell) == Stage::Trained {
        let args: Vec<String> = ["test".into(), "--run".into(), s(&run)].into_iter().chain(mlflow_args(plan, cell)).collect();
        state.test_seconds = child(bin, &args, threads, &cell.dir.join("test.log"))?;
    }
    let heat = cell.dir.join("heatmaps");
    if !heat.join("scores.csv").is_file() {
        let picks = heatmap_images(cell, &plan.data_root)?;
        let mut args = vec!["predict".into(), "--run".into(), s(&run), "--out".into(), s(&heat)];
        args.extend(picks.iter().map(|p| s(&p.image)));
        child(bin, &args, threads, &cell.dir.join("test.log"))?;
    }
    state.status = "done".into();
    write_state(cell, &state)?;
    Ok(state)
}

/// Runs one cell through [`run_cell`] and records a failure in its
/// `cell.json` (status `failed`, or `interrupted` when a signal from outside
/// stopped the step; the error, the failing step's log). The one
/// cell runner of both executors: the local one calls it from its worker
/// threads, a Slurm array task from `cargo xtask sweep run-cell`.
pub fn run_one(plan: &Plan, cell: &Cell, bin: &Path, threads: usize, prov: &Provenance, runner: &str) -> Result<CellState> {
    run_cell(plan, cell, bin, threads, prov, runner).inspect_err(|e| {
        let mut st = read_state(cell).unwrap_or_default();
        st.label = cell.label();
        let child = e.downcast_ref::<ChildFailed>();
        st.status = if child.is_some_and(|c| c.interrupted()) { "interrupted" } else { "failed" }.into();
        st.error = Some(format!("{e:#}"));
        st.log = child.map(|c| c.log.clone());
        st.runner = Some(runner.to_string());
        let _ = write_state(cell, &st);
    })
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub skipped: usize,
    pub ran: usize,
    pub failed: Vec<(String, String)>,
    pub tables: Vec<PathBuf>,
    pub charts: Vec<PathBuf>,
}

/// Writes `sweep.json`: what was asked (the resolved command line, which is
/// also how a Slurm array task rebuilds the plan), git commit, machine, cells.
pub fn write_sweep_json(plan: &Plan, prov: &Provenance) -> Result<()> {
    std::fs::create_dir_all(&plan.dir).with_context(|| format!("creating {}", plan.dir.display()))?;
    let meta = serde_json::json!({
        "args": plan.args,
        "kind": plan.kind,
        "suite": plan.suite.name,
        "suite_file": plan.suite_file,
        "preset": plan.preset,
        "data_root": plan.data_root,
        "jobs": plan.jobs,
        "provenance": prov,
        "cells": plan.cells.iter().map(|c| c.label()).collect::<Vec<_>>(),
    });
    write_atomic(&plan.dir.join("sweep.json"), serde_json::to_string_pretty(&meta)?.as_bytes())
}

/// Checks what every executor needs before it starts: the data sets, the
/// binary, and that no cell directory holds another plan.
pub fn preflight(plan: &Plan, bin: &Path) -> Result<()> {
    plan.suite.check_present(&plan.data_root)?;
    if !bin.is_file() {
        bail!("the multiad binary {} does not exist; build it with `cargo build -p multiad-cli`", bin.display());
    }
    check_cells(plan)
}

/// Tables and charts from the finished cells (what `--collect` makes),
/// logged to MLflow when the sweep logs there.
pub fn collect_outputs(plan: &Plan) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let records = crate::records::collect(plan)?;
    let out = (crate::tables::write_all(plan, &records)?, crate::charts::write_all(plan, &records)?);
    if let Some(t) = &plan.args.mlflow {
        let t = t.tracking();
        let name = format!("{} tables", plan.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        t.settle(&plan.dir, multiad_mlflow::log_sweep_outputs(&t, &plan.dir, &name))?;
    }
    Ok(out)
}

/// The local executor: runs every cell of `plan` with the `multiad` binary
/// `bin`, `--jobs` at a time, then writes tables and charts. Missing data
/// sets and cells of another plan are reported before anything runs.
pub fn run_sweep(plan: &Plan, bin: &Path) -> Result<Outcome> {
    preflight(plan, bin)?;
    let prov = Provenance::here(Path::new("."));
    write_sweep_json(plan, &prov)?;
    let runner = local_runner();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jobs = plan.jobs.min(plan.cells.len().max(1));
    let threads = (cores / jobs).max(1);
    let mut outcome = Outcome::default();
    let mut queue = VecDeque::new();
    for (i, c) in plan.cells.iter().enumerate() {
        if stage(c) == Stage::Done {
            outcome.skipped += 1;
        } else {
            queue.push_back(i);
        }
    }
    let total = plan.cells.len();
    eprintln!(
        "{} {} on {} ({} data sets, preset {}): {total} cells, {} finished, {} to run, {jobs} at a time x {threads} threads",
        plan.kind.name(),
        plan.suite.name,
        plan.data_root.display(),
        plan.suite.datasets.len(),
        plan.preset,
        outcome.skipped,
        queue.len()
    );
    let queue = Mutex::new(queue);
    let done = Mutex::new((outcome.skipped, Vec::<(String, String)>::new(), 0usize));
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let Some(i) = queue.lock().unwrap().pop_front() else { break };
                let cell = &plan.cells[i];
                eprintln!("  start {} ({:?})", cell.label(), stage(cell));
                let r = run_one(plan, cell, bin, threads, &prov, &runner);
                let mut d = done.lock().unwrap();
                d.0 += 1;
                match r {
                    Ok(st) => {
                        d.2 += 1;
                        eprintln!(
                            "[{}/{total}] {} done: train {:.0} s, test {:.0} s (sweep {:.0} s)",
                            d.0,
                            cell.label(),
                            st.train_seconds,
                            st.test_seconds,
                            t0.elapsed().as_secs_f64()
                        );
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        eprintln!("[{}/{total}] {} FAILED: {msg}", d.0, cell.label());
                        d.1.push((cell.label(), msg));
                    }
                }
            });
        }
    });
    let (_, failed, ran) = done.into_inner().unwrap();
    outcome.failed = failed;
    outcome.ran = ran;
    (outcome.tables, outcome.charts) = collect_outputs(plan)?;
    Ok(outcome)
}

/// `local:<host>:<pid>`: lets `sweep status` tell a cell a live local sweep
/// is running from one whose sweep was killed.
pub fn local_runner() -> String {
    format!("local:{}:{}", crate::machine::hostname(), std::process::id())
}

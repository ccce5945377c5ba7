//! Running a plan: each cell as `multiad` child processes, `--jobs` at a time,
//! skipping finished cells and resuming interrupted ones.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use multiad::run_dir::write_atomic;
use multiad_data::Label;

use crate::machine::Provenance;
use crate::plan::{Cell, Plan};

/// What `cell.json` records about a cell.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CellState {
    pub label: String,
    /// `done` or `failed`.
    pub status: String,
    /// Wall time of `multiad train` (summed over resumed invocations) and of
    /// `multiad test`, seconds.
    pub train_seconds: f64,
    pub test_seconds: f64,
    /// How many times training was (re)started for this cell.
    pub train_invocations: usize,
    pub threads: usize,
    pub provenance: Option<Provenance>,
    pub error: Option<String>,
}

/// Where a cell stands on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Fresh,
    Interrupted,
    Trained,
    Tested,
    Done,
}

pub fn stage(cell: &Cell) -> Stage {
    let run = cell.run_dir();
    let done = read_state(cell).is_some_and(|s| s.status == "done");
    if done && run.join("metrics.json").is_file() {
        Stage::Done
    } else if run.join("metrics.json").is_file() {
        Stage::Tested
    } else if run.join("training.json").is_file() {
        Stage::Trained
    } else if run.join("config.yaml").is_file() {
        Stage::Interrupted
    } else {
        Stage::Fresh
    }
}

pub fn read_state(cell: &Cell) -> Option<CellState> {
    let text = std::fs::read_to_string(cell.dir.join("cell.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(cell: &Cell, s: &CellState) -> Result<()> {
    write_atomic(&cell.dir.join("cell.json"), serde_json::to_string_pretty(s)?.as_bytes())
}

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
        bail!("`multiad {}` failed ({status}); last lines of {}:\n{}", args.join(" "), log.display(), tail.join("\n"));
    }
    Ok(t.elapsed().as_secs_f64())
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A few test images for the heat-map grid: two normal and two anomalous,
/// evenly spaced in the sorted list (the same in every cell of a data set).
pub fn heatmap_images(cell: &Cell, data_root: &Path) -> Result<Vec<multiad_data::Sample>> {
    let ds = cell.spec.load(data_root)?;
    let mut picks = Vec::new();
    for label in [Label::Normal, Label::Anomalous] {
        let mut all: Vec<_> = ds.test.iter().filter(|t| t.label == label).cloned().collect();
        all.sort_by(|a, b| a.image.cmp(&b.image));
        for k in 1..=2 {
            if let Some(x) = all.get(all.len() * k / 3) {
                picks.push(x.clone());
            }
        }
    }
    Ok(picks)
}

fn run_cell(plan: &Plan, cell: &Cell, bin: &Path, threads: usize, prov: &Provenance) -> Result<CellState> {
    std::fs::create_dir_all(&cell.dir).with_context(|| format!("creating {}", cell.dir.display()))?;
    // A cell's inputs are written once; a different plan for the same cell is
    // refused rather than mixed into finished results.
    let cfg_path = cell.dir.join("config.yaml");
    if cfg_path.is_file() {
        let existing = multiad_methods::parse_file(&cfg_path, Default::default())?;
        if existing != cell.config {
            bail!(
                "{} was run with a different configuration (preset, epochs or seed changed?); choose another --out",
                cell.dir.display()
            );
        }
    } else {
        write_atomic(&cfg_path, cell.config.to_yaml().as_bytes())?;
    }
    let data_path = cell.dir.join("dataset.yaml");
    write_atomic(&data_path, serde_yaml_ng::to_string(&cell.spec)?.as_bytes())?;
    let mut state = read_state(cell).unwrap_or_default();
    state.label = cell.label();
    state.threads = threads;
    state.provenance = Some(prov.clone());
    let run = cell.run_dir();
    let st = stage(cell);
    if matches!(st, Stage::Fresh | Stage::Interrupted) {
        let args: Vec<String> = if st == Stage::Fresh {
            if run.exists() {
                std::fs::remove_dir_all(&run).ok(); // an empty or config-less start of a run
            }
            ["train", "--config", &s(&cfg_path), "--data", &s(&data_path), "--data-root", &s(&plan.data_root), "--out", &s(&run)]
                .map(String::from)
                .to_vec()
        } else {
            ["train", "--resume", "--out", &s(&run)].map(String::from).to_vec()
        };
        state.train_invocations += 1;
        let secs = child(bin, &args, threads, &cell.dir.join("train.log"))?;
        state.train_seconds += secs;
        write_state(cell, &CellState { status: "running".into(), ..state.clone() })?;
    }
    if stage(cell) == Stage::Trained {
        state.test_seconds = child(bin, &["test".into(), "--run".into(), s(&run)], threads, &cell.dir.join("test.log"))?;
    }
    let heat = cell.dir.join("heatmaps");
    if !heat.join("scores.csv").is_file() {
        let picks = heatmap_images(cell, &plan.data_root)?;
        let mut args = vec!["predict".into(), "--run".into(), s(&run), "--out".into(), s(&heat)];
        args.extend(picks.iter().map(|p| s(&p.image)));
        child(bin, &args, threads, &cell.dir.join("test.log"))?;
    }
    state.status = "done".into();
    state.error = None;
    write_state(cell, &state)?;
    Ok(state)
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

/// Runs every cell of `plan` with the `multiad` binary `bin`, then writes
/// tables and charts. Missing data sets are reported before anything runs.
pub fn run_sweep(plan: &Plan, bin: &Path) -> Result<Outcome> {
    plan.suite.check_present(&plan.data_root)?;
    if !bin.is_file() {
        bail!("the multiad binary {} does not exist; build it with `cargo build -p multiad-cli`", bin.display());
    }
    std::fs::create_dir_all(&plan.dir).with_context(|| format!("creating {}", plan.dir.display()))?;
    let prov = Provenance::here(Path::new("."));
    let meta = serde_json::json!({
        "kind": plan.kind,
        "suite": plan.suite.name,
        "suite_file": plan.suite_file,
        "preset": plan.preset,
        "data_root": plan.data_root,
        "jobs": plan.jobs,
        "provenance": prov,
        "cells": plan.cells.iter().map(|c| c.label()).collect::<Vec<_>>(),
    });
    write_atomic(&plan.dir.join("sweep.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;

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
                let r = run_cell(plan, cell, bin, threads, &prov);
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
                        let mut st = read_state(cell).unwrap_or_default();
                        st.label = cell.label();
                        st.status = "failed".into();
                        st.error = Some(msg.clone());
                        let _ = write_state(cell, &st);
                        d.1.push((cell.label(), msg));
                    }
                }
            });
        }
    });
    let (_, failed, ran) = done.into_inner().unwrap();
    outcome.failed = failed;
    outcome.ran = ran;
    let records = crate::records::collect(plan)?;
    outcome.tables = crate::tables::write_all(plan, &records)?;
    outcome.charts = crate::charts::write_all(plan, &records)?;
    Ok(outcome)
}

//! Where a sweep's cell stands: `cell.json` ([`CellState`], written by the
//! cell runner) and the files of its run directory ([`Stage`]). The runner,
//! the Slurm executor, `sweep status` and the records all read it here.

use std::path::{Path, PathBuf};

use anyhow::Result;
use multiad_detector::write_atomic;

use crate::machine::Provenance;
use crate::plan::Cell;

/// What `cell.json` records about a cell.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CellState {
    pub label: String,
    /// `running`, `done`, `failed`, or `interrupted` (a step stopped by a
    /// signal from outside: scancel, preemption, a time limit, Ctrl-C).
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
    /// The log of the step that failed (`train.log` or `test.log`).
    #[serde(default)]
    pub log: Option<PathBuf>,
    /// Who runs or ran the cell: `local:<host>:<pid>` for the local executor,
    /// `slurm:<array job>_<task>` for a Slurm array task.
    #[serde(default)]
    pub runner: Option<String>,
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

pub(crate) fn write_state(cell: &Cell, s: &CellState) -> Result<()> {
    write_atomic(&cell.dir.join("cell.json"), serde_json::to_string_pretty(s)?.as_bytes())
}

/// A few test images for the heat-map grid: two normal and two anomalous,
/// evenly spaced in the sorted list (the same in every cell of a data set;
/// the examples `multiad test` shows in TensorBoard).
pub fn heatmap_images(cell: &Cell, data_root: &Path) -> Result<Vec<multiad_data::Sample>> {
    let ds = cell.spec.load(data_root)?;
    Ok(multiad_detector::results::example_images(&ds.test).into_iter().map(|i| ds.test[i].clone()).collect())
}

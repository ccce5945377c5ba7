//! Sweeps: Table 4's ablation (the eight SE/D/MFF studies) and Tables 2/3's
//! benchmark (every method of a suite) over every data set of a suite.
//!
//! A sweep directory (`results/<kind>-<suite>-<preset>/`) holds `sweep.json`
//! (what was asked, git commit, machine) and one directory per cell
//! (`cells/<data set>/<study-N | method>/`): the cell's resolved config, data
//! set spec, the `multiad` run directory (checkpoints, history, metrics,
//! scores), logs and `cell.json` (timings, peak memory, status). Every cell
//! runs as `multiad train` + `multiad test` child processes, so a cell can be
//! re-run by hand, a killed sweep loses at most the current epoch, and
//! parallel cells (`--jobs`) split the cores between them. Re-running the
//! same command skips finished cells and resumes interrupted ones; tables
//! (`tables/`, Polars: CSV, Parquet, Markdown) and charts (`charts/`,
//! Plotters: PNG and SVG) are rebuilt from the cells each time.
//!
//! Two executors run the cells: the local one (`run::run_sweep`, child
//! processes, `--jobs` at a time) and Slurm (`slurm::submit`, one job array
//! whose tasks run the same cell runner). `status` reads where every cell
//! stands, whichever executor ran it.

pub mod cell_state;
pub mod charts;
pub mod machine;
pub mod paper;
pub mod plan;
pub mod records;
pub mod run;
pub mod slurm;
pub mod status;
pub mod tables;

pub use plan::{Cell, Plan, SweepArgs, SweepKind, SweepTracking};
pub use run::run_sweep;

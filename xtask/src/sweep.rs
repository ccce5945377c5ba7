//! `cargo xtask ablation` and `cargo xtask benchmark`: build the `multiad`
//! binary (same profile as this xtask), then hand the plan to multiad-sweep.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use multiad_sweep::{run_sweep, Plan, SweepArgs, SweepKind};

#[derive(Args)]
pub struct SweepCli {
    /// A suite (experiments/suites/<name>.yaml: industrial, medical, shared, synthetic) or a suite YAML path.
    #[arg(long)]
    suite: String,
    /// A preset (experiments/<name>.yaml: smoke, cpu, paper) or an experiment YAML path.
    #[arg(long)]
    preset: String,
    /// The directory the suite's data set paths are relative to.
    #[arg(long)]
    data_root: PathBuf,
    /// Only these data sets (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    datasets: Option<Vec<String>>,
    /// Only these Table 4 studies (comma-separated, 1-8; ablation only).
    #[arg(long, value_delimiter = ',')]
    configs: Option<Vec<u8>>,
    /// Cells run at once; the cores are split between them.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Sweep directory (default results/<kind>-<suite>-<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override the preset's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the preset's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// The multiad binary to run cells with (default: build it now).
    #[arg(long)]
    multiad: Option<PathBuf>,
}

/// Builds `multiad` into this xtask's target directory and profile.
fn build_multiad() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("xtask has no directory")?.to_path_buf();
    let profile = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", "multiad-cli", "--bin", "multiad"]);
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build -p multiad-cli")?;
    if !status.success() {
        bail!("building the multiad binary failed");
    }
    Ok(dir.join("multiad"))
}

pub fn run(kind: SweepKind, a: SweepCli) -> Result<()> {
    if kind == SweepKind::Benchmark && a.configs.is_some() {
        bail!("--configs selects Table 4 studies; it belongs to `cargo xtask ablation`");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let args = SweepArgs {
        kind,
        suite: a.suite,
        preset: a.preset,
        data_root: a.data_root,
        datasets: a.datasets,
        configs: a.configs,
        jobs: a.jobs,
        out: a.out,
        epochs: a.epochs,
        seed: a.seed,
        experiments: root.join("experiments"),
    };
    let plan = Plan::new(&args)?;
    plan.suite.check_present(&plan.data_root)?;
    let bin = match a.multiad {
        Some(b) => b,
        None => build_multiad()?,
    };
    let outcome = run_sweep(&plan, &bin)?;
    eprintln!("{} cells ran, {} were already finished", outcome.ran, outcome.skipped);
    for p in outcome.tables.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        println!("{}", std::fs::read_to_string(p)?);
        eprintln!("table: {}", p.display());
    }
    eprintln!("tables in {}, {} chart files in {}", plan.dir.join("tables").display(), outcome.charts.len(), plan.dir.join("charts").display());
    if !outcome.failed.is_empty() {
        for (cell, e) in &outcome.failed {
            eprintln!("FAILED {cell}: {e}");
        }
        bail!("{} cells failed; fix the cause and re-run the same command to resume", outcome.failed.len());
    }
    Ok(())
}

//! Project tasks: `cargo xtask bench ...`, `cargo xtask ablation ...`,
//! `cargo xtask benchmark ...`, `cargo xtask sweep ...`, `cargo xtask faults`.

mod bench;
mod faults;
mod model_bench;
mod patchcore_bench;
mod sweep;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "multiad project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks that compare alternatives side by side in one run and print ratios.
    Bench(bench::BenchArgs),
    /// Table 4: train and test the eight SE/D/MFF studies on every data set of a suite.
    Ablation(sweep::SweepCli),
    /// Tables 2/3: every method of a suite on every data set.
    Benchmark(sweep::SweepCli),
    /// A sweep directory: status, collect its tables, run one cell (Slurm array tasks).
    #[command(subcommand)]
    Sweep(sweep::SweepCommand),
    /// Fault injection: kill -9 in train/test/prep/sweep, a torn checkpoint, a full disk, bad inputs.
    Faults(faults::FaultArgs),
}

/// The repository: the current directory when it is one (an xtask binary
/// carried to another machine, `scripts/device_check.sh`), else the one
/// this xtask was built from.
pub fn repo_root() -> std::path::PathBuf {
    let here = std::path::PathBuf::from(".");
    if here.join("experiments").is_dir() && here.join("scripts").is_dir() {
        return std::fs::canonicalize(&here).unwrap_or(here);
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Bench(a) => bench::run(a),
        Command::Ablation(a) => sweep::run(multiad_sweep::SweepKind::Ablation, a),
        Command::Benchmark(a) => sweep::run(multiad_sweep::SweepKind::Benchmark, a),
        Command::Sweep(c) => sweep::run_sweep_command(c),
        Command::Faults(a) => faults::run(a),
    }
}

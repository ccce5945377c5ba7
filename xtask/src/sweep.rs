//! `cargo xtask ablation`, `cargo xtask benchmark` and `cargo xtask sweep`:
//! build the `multiad` binary (same profile as this xtask), then hand the
//! plan to multiad-sweep's local or Slurm executor.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use multiad_sweep::cell_state::{stage, Stage};
use multiad_sweep::run::{collect_outputs, local_runner, preflight, run_one};
use multiad_sweep::slurm::{submit, SlurmOptions};
use multiad_sweep::status::{render, sweep_status, State};
use multiad_sweep::{run_sweep, Plan, SweepArgs, SweepKind, SweepTracking};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Executor {
    /// Child processes on this machine, --jobs at a time.
    Local,
    /// One Slurm job array, a task per unfinished cell (docs/sweeps.md).
    Slurm,
}

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
    /// Cells run at once (local: default 1, the cores are split between
    /// them; slurm: the array's %P cap, default every cell).
    #[arg(long)]
    jobs: Option<usize>,
    /// Sweep directory (default results/<kind>-<suite>-<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override the preset's epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the preset's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Where every cell runs: cpu, cuda or cuda:N (default: the presets' `device`).
    #[arg(long, value_name = "DEVICE")]
    device: Option<multiad_nn::DeviceSpec>,
    /// The multiad binary to run cells with (default: build it now).
    #[arg(long)]
    multiad: Option<PathBuf>,
    /// Where the cells run.
    #[arg(long, value_enum, default_value = "local")]
    executor: Executor,
    /// Run nothing: make the tables and charts from the cells finished so far.
    #[arg(long)]
    collect: bool,
    /// Log every cell's run, and the tables, to this MLflow tracking server
    /// (default: $MLFLOW_TRACKING_URI; docs/tracking.md).
    #[arg(long, value_name = "URI")]
    mlflow: Option<String>,
    /// The MLflow experiment (default: multiad-<kind>-<suite>-<preset>).
    #[arg(long, value_name = "NAME")]
    mlflow_experiment: Option<String>,
    /// When the server cannot be reached: warn, or fail the cell.
    #[arg(long, default_value = "warn", value_parser = ["warn", "fail"])]
    mlflow_on_error: String,
    #[command(flatten)]
    slurm: SlurmCli,
}

#[derive(Args)]
#[command(next_help_heading = "Slurm (--executor slurm)")]
struct SlurmCli {
    /// #SBATCH --partition.
    #[arg(long)]
    partition: Option<String>,
    /// #SBATCH --time, per cell (e.g. 04:00:00).
    #[arg(long)]
    time: Option<String>,
    /// #SBATCH --gres=gpu:N, per cell.
    #[arg(long, default_value_t = 0)]
    gpus_per_cell: u32,
    /// #SBATCH --cpus-per-task, per cell (also the cell's thread count).
    #[arg(long, default_value_t = 4)]
    cpus_per_cell: usize,
    /// #SBATCH --mem, per cell (e.g. 16G).
    #[arg(long)]
    mem_per_cell: Option<String>,
    /// An extra #SBATCH line, repeatable (e.g. --sbatch=--account=lab).
    #[arg(long = "sbatch", allow_hyphen_values = true)]
    sbatch: Vec<String>,
    /// Print the job script; submit and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait for the array to finish, then make the tables here.
    #[arg(long)]
    wait: bool,
}

#[derive(Subcommand)]
pub enum SweepCommand {
    /// Where every cell of a sweep directory stands (done, running, pending, failed, interrupted).
    Status { dir: PathBuf },
    /// Make the tables and charts from the finished cells.
    Collect {
        dir: PathBuf,
        /// Only when every cell is done (else print the status; exit 1 if a cell failed).
        #[arg(long)]
        when_complete: bool,
    },
    /// Run one cell of a sweep directory (what a Slurm array task runs).
    RunCell {
        dir: PathBuf,
        /// The cell's label, `dataset/study-N` or `dataset/method`.
        #[arg(long)]
        cell: String,
        /// The multiad binary.
        #[arg(long)]
        multiad: PathBuf,
    },
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
    // The cells' binary can use a GPU when this xtask was built to.
    if multiad_nn::device::CUDA_BUILT {
        cmd.args(["--features", "cuda"]);
    }
    let status = cmd.status().context("running cargo build -p multiad-cli")?;
    if !status.success() {
        bail!("building the multiad binary failed");
    }
    Ok(dir.join("multiad"))
}

/// Prints the Markdown tables and where tables and charts went.
fn print_tables(plan: &Plan, tables: &[PathBuf], charts: &[PathBuf]) -> Result<()> {
    for p in tables.iter().filter(|p| p.extension().is_some_and(|e| e == "md")) {
        println!("{}", std::fs::read_to_string(p)?);
        eprintln!("table: {}", p.display());
    }
    eprintln!("tables in {}, {} chart files in {}", plan.dir.join("tables").display(), charts.len(), plan.dir.join("charts").display());
    Ok(())
}

/// Makes the tables from what is finished, prints the status, and fails
/// when a cell failed (each listed with its log).
fn collect_and_report(plan: &Plan) -> Result<()> {
    let (tables, charts) = collect_outputs(plan)?;
    print_tables(plan, &tables, &charts)?;
    let rows = sweep_status(plan)?;
    let failed: Vec<_> = rows.iter().filter(|r| r.state == State::Failed).collect();
    if rows.iter().any(|r| r.state != State::Done) {
        eprint!("{}", render(&rows));
    }
    if !failed.is_empty() {
        bail!("{} cells failed; fix the cause and re-run the same command to resume", failed.len());
    }
    Ok(())
}

pub fn run(kind: SweepKind, a: SweepCli) -> Result<()> {
    if kind == SweepKind::Benchmark && a.configs.is_some() {
        bail!("--configs selects Table 4 studies; it belongs to `cargo xtask ablation`");
    }
    let root = crate::repo_root();
    let args = SweepArgs {
        kind,
        suite: a.suite,
        preset: a.preset,
        data_root: a.data_root,
        datasets: a.datasets,
        configs: a.configs,
        jobs: a.jobs.unwrap_or(1),
        out: a.out,
        epochs: a.epochs,
        seed: a.seed,
        device: a.device,
        experiments: root.join("experiments"),
        mlflow: None,
    };
    let mut plan = Plan::new(&args)?;
    if let Some(uri) = a.mlflow.or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok()).filter(|u| !u.is_empty()) {
        let experiment = a.mlflow_experiment.unwrap_or_else(|| format!("multiad-{}-{}-{}", kind.name(), plan.suite.name, plan.preset));
        plan.args.mlflow = Some(SweepTracking { uri, experiment, on_error: a.mlflow_on_error });
    }
    if a.collect {
        return collect_and_report(&plan);
    }
    plan.suite.check_present(&plan.data_root)?;
    let bin = match a.multiad {
        Some(b) => b,
        None => build_multiad()?,
    };
    match a.executor {
        Executor::Local => {
            let outcome = run_sweep(&plan, &bin)?;
            eprintln!("{} cells ran, {} were already finished", outcome.ran, outcome.skipped);
            print_tables(&plan, &outcome.tables, &outcome.charts)?;
            if !outcome.failed.is_empty() {
                for (cell, e) in &outcome.failed {
                    eprintln!("FAILED {cell}: {e}");
                }
                bail!("{} cells failed; fix the cause and re-run the same command to resume", outcome.failed.len());
            }
            Ok(())
        }
        Executor::Slurm => {
            let s = a.slurm;
            let opts = SlurmOptions {
                partition: s.partition,
                time: s.time,
                gpus_per_cell: s.gpus_per_cell,
                cpus_per_cell: s.cpus_per_cell,
                mem: s.mem_per_cell,
                extra: s.sbatch,
                max_parallel: a.jobs.unwrap_or(plan.cells.len()),
                dry_run: s.dry_run,
                wait: s.wait,
            };
            let xtask = std::env::current_exe().context("the path of this xtask binary")?;
            let bin = std::fs::canonicalize(&bin).with_context(|| format!("{}", bin.display()))?;
            let o = submit(&plan, &bin, &xtask, &opts)?;
            if opts.dry_run {
                match &o.script {
                    Some(script) => print!("{script}"),
                    None => eprintln!("nothing to submit"),
                }
                eprintln!("dry run: {} cells done, {} queued, {} would be submitted; nothing submitted", o.done, o.queued.len(), o.submitted.len());
                return Ok(());
            }
            eprintln!(
                "{} {}: {} cells, {} done, {} still queued or running, {} submitted",
                kind.name(),
                plan.suite.name,
                plan.cells.len(),
                o.done,
                o.queued.len(),
                o.submitted.len()
            );
            if let Some(id) = &o.job_id {
                eprintln!("  array job {id}: {}", o.submitted.join(", "));
            }
            if let Some(id) = &o.collect_job {
                eprintln!("  collect job {id} makes the tables once the array has finished");
            }
            if opts.wait || (o.submitted.is_empty() && o.queued.is_empty()) {
                return collect_and_report(&plan);
            }
            eprintln!("follow with: cargo xtask sweep status {}", plan.dir.display());
            Ok(())
        }
    }
}

pub fn run_sweep_command(c: SweepCommand) -> Result<()> {
    match c {
        SweepCommand::Status { dir } => {
            let plan = Plan::from_sweep_dir(&dir)?;
            print!("{}", render(&sweep_status(&plan)?));
            Ok(())
        }
        SweepCommand::Collect { dir, when_complete } => {
            let plan = Plan::from_sweep_dir(&dir)?;
            if when_complete {
                let rows = sweep_status(&plan)?;
                if rows.iter().any(|r| r.state != State::Done) {
                    eprint!("{}", render(&rows));
                    eprintln!("not every cell is done: no tables made (`cargo xtask sweep collect {}` makes them from what is finished)", dir.display());
                    if rows.iter().any(|r| r.state == State::Failed) {
                        bail!("some cells failed");
                    }
                    return Ok(());
                }
            }
            collect_and_report(&plan)
        }
        SweepCommand::RunCell { dir, cell, multiad } => run_cell_task(&dir, &cell, &multiad),
    }
}

/// One cell, as a Slurm array task runs it: the same runner as the local
/// executor, with the task's CPUs as threads.
fn run_cell_task(dir: &Path, label: &str, bin: &Path) -> Result<()> {
    let plan = Plan::from_sweep_dir(dir)?;
    let cell = plan.cell(label)?;
    if stage(cell) == Stage::Done {
        eprintln!("{label} is already done");
        return Ok(());
    }
    preflight(&Plan { cells: vec![cell.clone()], ..plan.clone() }, bin)?;
    let threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let runner = match (std::env::var("SLURM_ARRAY_JOB_ID"), std::env::var("SLURM_ARRAY_TASK_ID")) {
        (Ok(j), Ok(t)) => format!("slurm:{j}_{t}"),
        _ => local_runner(),
    };
    // The array task starts where sbatch was called, as a local sweep does.
    let prov = multiad_sweep::machine::Provenance::here(Path::new("."));
    eprintln!("{label}: {threads} threads on {}", prov.hostname);
    let st = run_one(&plan, cell, bin, threads, &prov, &runner)?;
    eprintln!("{label} done: train {:.0} s, test {:.0} s", st.train_seconds, st.test_seconds);
    Ok(())
}

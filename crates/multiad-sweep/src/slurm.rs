//! The Slurm executor: the cells of a sweep as one job array, each array
//! task running one cell through the same cell runner as the local executor
//! ([`crate::run::run_one`], via `cargo xtask sweep run-cell`).
//!
//! State stays in the sweep directory (on the cluster's shared filesystem):
//! the cells' own files say what is finished, and `slurm/submissions.json`
//! says which array task was given which cell. Re-running the sweep command
//! asks `squeue` which of those tasks are still queued or running and
//! submits a new array for every other unfinished cell, so preempted,
//! cancelled or failed cells are resubmitted and nothing runs twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use multiad_detector::write_atomic;

use crate::cell_state::{stage, Stage};
use crate::plan::{Cell, Plan};

/// The `#SBATCH` options of a sweep's array (and of its collect job, which
/// takes the partition, time limit and extra lines but no GPU).
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` per cell (Slurm's formats: `MM`, `HH:MM:SS`, `D-HH`, ...).
    pub time: Option<String>,
    /// `--gres=gpu:N` per cell (0: no GPU asked for).
    pub gpus_per_cell: u32,
    /// `--cpus-per-task`; the cell's `RAYON_NUM_THREADS`.
    pub cpus_per_cell: usize,
    /// `--mem` per cell (`16G`, ...).
    pub mem: Option<String>,
    /// Extra `#SBATCH` lines, with or without the `#SBATCH ` prefix
    /// (`--account=lab`, `--qos=long`, `--constraint=a100`).
    pub extra: Vec<String>,
    /// The `%P` of `--array`: at most this many cells at once.
    pub max_parallel: usize,
    /// Print the script, submit nothing, write nothing.
    pub dry_run: bool,
    /// Block until the array has finished (polling `squeue`), then make the
    /// tables here instead of in a dependent collect job.
    pub wait: bool,
}

/// One `sbatch` of an array: which task index ran which cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Submission {
    /// The array's job id (`SLURM_ARRAY_JOB_ID`).
    pub job_id: String,
    pub script: PathBuf,
    /// Cell labels by array task index.
    pub cells: Vec<String>,
    /// Seconds since the Unix epoch.
    pub submitted: u64,
    /// The job that makes the tables after the array (`afterany`).
    pub collect_job: Option<String>,
}

impl Submission {
    /// `<job>_<index>`, as `squeue` and `sacct` name an array task.
    pub fn task_id(&self, index: usize) -> String {
        format!("{}_{index}", self.job_id)
    }
}

/// Where array task `index`'s own output goes (the cell's steps also log to
/// the cell's `train.log` and `test.log`).
pub fn task_log(dir: &Path, task_id: &str) -> PathBuf {
    dir.join("slurm/logs").join(format!("{task_id}.out"))
}

fn submissions_path(dir: &Path) -> PathBuf {
    dir.join("slurm/submissions.json")
}

pub fn read_submissions(dir: &Path) -> Result<Vec<Submission>> {
    let p = submissions_path(dir);
    if !p.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

fn write_submissions(dir: &Path, subs: &[Submission]) -> Result<()> {
    write_atomic(&submissions_path(dir), serde_json::to_string_pretty(subs)?.as_bytes())
}

/// The latest array task each cell was given: label -> task id.
pub fn latest_tasks(subs: &[Submission]) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for s in subs {
        for (i, label) in s.cells.iter().enumerate() {
            m.insert(label.clone(), s.task_id(i));
        }
    }
    m
}

/// `program` on PATH, or an error that names it and says what it is for.
fn require(program: &str) -> Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
    if !found {
        bail!("`{program}` is not on PATH: --executor slurm needs Slurm's client commands (sbatch, squeue) on the machine that runs the sweep command, usually a cluster login node");
    }
    Ok(())
}

/// This user's queued and running jobs: task id -> Slurm state. Pending
/// array tasks are listed one by one (`-r`). Empty when `squeue` is absent.
pub fn queue() -> Result<HashMap<String, String>> {
    if require("squeue").is_err() {
        return Ok(HashMap::new());
    }
    let out = Command::new("squeue").args(["--me", "-h", "-r", "-o", "%i|%T"]).output().context("running squeue")?;
    if !out.status.success() {
        bail!("squeue failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(parse_pairs(&String::from_utf8_lossy(&out.stdout)))
}

/// Slurm's accounting for these array jobs (task id -> final state such as
/// `COMPLETED`, `FAILED`, `CANCELLED by 0`, `TIMEOUT`, `PREEMPTED`,
/// `NODE_FAIL`, `OUT_OF_MEMORY`); `None` where the site keeps no accounting.
pub fn accounting(job_ids: &[String]) -> Option<HashMap<String, String>> {
    if job_ids.is_empty() || require("sacct").is_err() {
        return None;
    }
    let out = Command::new("sacct").args(["-n", "-P", "-X", "-o", "JobID,State", "-j", &job_ids.join(",")]).output().ok()?;
    out.status.success().then(|| parse_pairs(&String::from_utf8_lossy(&out.stdout)))
}

/// `id|state` lines (what `squeue -o %i|%T` and `sacct -P -o JobID,State` print).
fn parse_pairs(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.trim().split_once('|')).map(|(id, st)| (id.trim().to_string(), st.trim().to_string())).collect()
}

/// Single-quoted for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The `#SBATCH` lines both jobs share.
fn common_lines(opts: &SlurmOptions) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(p) = &opts.partition {
        lines.push(format!("--partition={p}"));
    }
    if let Some(t) = &opts.time {
        lines.push(format!("--time={t}"));
    }
    for e in &opts.extra {
        lines.push(e.trim().trim_start_matches("#SBATCH").trim().to_string());
    }
    lines
}

fn header(lines: &[String]) -> String {
    lines.iter().map(|l| format!("#SBATCH {l}\n")).collect()
}

/// The job name of a sweep: `multiad-<kind>-<suite>-<preset>`.
fn job_name(plan: &Plan) -> String {
    format!("multiad-{}-{}-{}", plan.kind.name(), plan.suite.name, plan.preset)
}

/// The array script: one task per cell of `cells`, each running
/// `<xtask> sweep run-cell <dir> --cell <label> --multiad <bin>`.
pub fn array_script(plan: &Plan, cells: &[&Cell], opts: &SlurmOptions, xtask: &Path, bin: &Path) -> String {
    let n = cells.len();
    let mut lines = vec![
        format!("--job-name={}", job_name(plan)),
        format!("--array=0-{}%{}", n.saturating_sub(1), opts.max_parallel.clamp(1, n.max(1))),
        format!("--cpus-per-task={}", opts.cpus_per_cell.max(1)),
        format!("--output={}", path_str(&plan.dir.join("slurm/logs/%A_%a.out"))),
    ];
    if opts.gpus_per_cell > 0 {
        lines.push(format!("--gres=gpu:{}", opts.gpus_per_cell));
    }
    if let Some(m) = &opts.mem {
        lines.push(format!("--mem={m}"));
    }
    lines.extend(common_lines(opts));
    let labels: String = cells.iter().map(|c| format!("  {}\n", quote(&c.label()))).collect();
    format!(
        "#!/bin/bash\n{}\
# Written by `cargo xtask {kind}` for {dir}: one array task per unfinished\n\
# cell. Re-running that command resubmits only the cells not done.\n\
set -euo pipefail\n\
cells=(\n{labels})\n\
exec {xtask} sweep run-cell {qdir} --cell \"${{cells[$SLURM_ARRAY_TASK_ID]}}\" --multiad {bin}\n",
        header(&lines),
        kind = plan.kind.name(),
        dir = plan.dir.display(),
        xtask = quote(&path_str(xtask)),
        qdir = quote(&path_str(&plan.dir)),
        bin = quote(&path_str(bin)),
    )
}

/// The collect job's script: the tables and charts once every cell is done.
pub fn collect_script(plan: &Plan, opts: &SlurmOptions, xtask: &Path) -> String {
    let mut lines = vec![
        format!("--job-name={}-collect", job_name(plan)),
        "--cpus-per-task=1".to_string(),
        format!("--output={}", path_str(&plan.dir.join("slurm/logs/collect-%j.out"))),
    ];
    lines.extend(common_lines(opts));
    format!(
        "#!/bin/bash\n{}set -euo pipefail\nexec {} sweep collect {} --when-complete\n",
        header(&lines),
        quote(&path_str(xtask)),
        quote(&path_str(&plan.dir))
    )
}

/// What a Slurm sweep command did.
#[derive(Debug, Clone, Default)]
pub struct SlurmOutcome {
    /// Cells already finished.
    pub done: usize,
    /// Unfinished cells whose array task is still queued or running.
    pub queued: Vec<String>,
    /// Cells put in the new array.
    pub submitted: Vec<String>,
    /// The new array's job id and script (the script alone on a dry run).
    pub job_id: Option<String>,
    pub script: Option<String>,
    pub collect_job: Option<String>,
}

/// `sbatch` a script; returns the job id (`--parsable` prints `id[;cluster]`).
fn sbatch(script: &Path, extra_args: &[String]) -> Result<String> {
    let out = Command::new("sbatch").arg("--parsable").args(extra_args).arg(script).output().context("running sbatch")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.lines().find_map(|l| l.split(';').next().map(str::trim).filter(|s| s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty()));
    match id {
        Some(id) if out.status.success() => Ok(id.to_string()),
        _ => bail!("sbatch {} failed ({}): {}", script.display(), out.status, String::from_utf8_lossy(&out.stderr).trim()),
    }
}

/// Submits the sweep's unfinished cells that are not already queued as one
/// job array, plus a collect job after it (unless `opts.wait`, when this
/// blocks until the array has finished). `xtask` is the program the array
/// tasks run (`cargo xtask`'s binary), `bin` the `multiad` binary; both, the
/// data and the sweep directory must be on a filesystem the nodes share.
pub fn submit(plan: &Plan, bin: &Path, xtask: &Path, opts: &SlurmOptions) -> Result<SlurmOutcome> {
    if !opts.dry_run {
        for p in ["sbatch", "squeue", "scontrol"] {
            require(p)?;
        }
    }
    crate::run::preflight(plan, bin)?;
    let subs = read_submissions(&plan.dir)?;
    let live = match queue() {
        Ok(q) => q,
        // A dry run may be made where Slurm is not configured.
        Err(e) if opts.dry_run => {
            eprintln!("note: {e:#}; assuming nothing of this sweep is queued");
            HashMap::new()
        }
        Err(e) => return Err(e),
    };
    let tasks = latest_tasks(&subs);
    let mut outcome = SlurmOutcome::default();
    let mut todo = Vec::new();
    for c in &plan.cells {
        if stage(c) == Stage::Done {
            outcome.done += 1;
        } else if tasks.get(&c.label()).is_some_and(|t| live.contains_key(t)) {
            outcome.queued.push(c.label());
        } else {
            todo.push(c);
        }
    }
    outcome.submitted = todo.iter().map(|c| c.label()).collect();
    if todo.is_empty() {
        return Ok(outcome);
    }
    let script = array_script(plan, &todo, opts, xtask, bin);
    outcome.script = Some(script.clone());
    if opts.dry_run {
        return Ok(outcome);
    }
    let prov = crate::machine::Provenance::here(Path::new("."));
    crate::run::write_sweep_json(plan, &prov)?;
    for c in &todo {
        crate::run::prepare_cell(c, true)?;
    }
    let slurm_dir = plan.dir.join("slurm");
    std::fs::create_dir_all(slurm_dir.join("logs")).with_context(|| format!("creating {}", slurm_dir.display()))?;
    let script_path = slurm_dir.join(format!("array-{}.sbatch", subs.len() + 1));
    write_atomic(&script_path, script.as_bytes())?;
    let mut subs = subs;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Submitted held and released once recorded: a crash in between leaves
    // a held array that the record knows of, never a running one it does not.
    let job_id = sbatch(&script_path, &["--hold".to_string()])?;
    subs.push(Submission { job_id: job_id.clone(), script: script_path, cells: outcome.submitted.clone(), submitted: now, collect_job: None });
    write_submissions(&plan.dir, &subs)?;
    if !opts.wait {
        let collect_path = slurm_dir.join(format!("collect-{}.sbatch", subs.len()));
        write_atomic(&collect_path, collect_script(plan, opts, xtask).as_bytes())?;
        let cid = sbatch(&collect_path, &[format!("--dependency=afterany:{job_id}")])?;
        subs.last_mut().unwrap().collect_job = Some(cid.clone());
        write_submissions(&plan.dir, &subs)?;
        outcome.collect_job = Some(cid);
    }
    scontrol(&["release", &job_id])?;
    if opts.wait {
        wait_for(&job_id)?;
    }
    outcome.job_id = Some(job_id);
    Ok(outcome)
}

fn scontrol(args: &[&str]) -> Result<()> {
    let out = Command::new("scontrol").args(args).output().context("running scontrol")?;
    if !out.status.success() {
        bail!("scontrol {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Polls `squeue` until no task of array job `id` is queued or running.
pub fn wait_for(id: &str) -> Result<()> {
    let prefix = format!("{id}_");
    loop {
        let q = queue()?;
        if !q.keys().any(|k| k == id || k.starts_with(&prefix)) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_sacct_lines_parse_into_task_states() {
        let m = parse_pairs("12_0|RUNNING\n12_1|PENDING\n 13_0|CANCELLED by 0 \n\nnot a line\n");
        assert_eq!(m.len(), 3);
        assert_eq!(m["12_0"], "RUNNING");
        assert_eq!(m["13_0"], "CANCELLED by 0");
    }

    #[test]
    fn labels_are_quoted_for_bash() {
        assert_eq!(quote("tiles/study-1"), "'tiles/study-1'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_latest_submission_of_a_cell_wins() {
        let s = |id: &str, cells: &[&str]| Submission {
            job_id: id.into(),
            script: PathBuf::new(),
            cells: cells.iter().map(|c| c.to_string()).collect(),
            submitted: 0,
            collect_job: None,
        };
        let t = latest_tasks(&[s("5", &["a", "b", "c"]), s("9", &["b"])]);
        assert_eq!((t["a"].as_str(), t["b"].as_str(), t["c"].as_str()), ("5_0", "9_0", "5_2"));
    }
}

//! `cargo xtask sweep status DIR`: where every cell of a sweep stands, from
//! its files, and from Slurm's queue and accounting for cells given to an
//! array task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cell_state::{read_state, stage, Stage};
use crate::plan::{Cell, Plan};
use crate::slurm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Done,
    Running,
    Pending,
    Failed,
    /// Started and stopped before the end (killed, cancelled, preempted, out
    /// of time): the next run of the sweep command resumes it.
    Interrupted,
    NotStarted,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Running => "running",
            State::Pending => "pending",
            State::Failed => "failed",
            State::Interrupted => "interrupted",
            State::NotStarted => "not started",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CellStatus {
    pub label: String,
    pub state: State,
    /// Times, the Slurm task, the error's first line.
    pub detail: String,
    /// The log to read: the failing step's, or the Slurm task's.
    pub log: Option<PathBuf>,
}

/// Whether the local sweep `runner` (`local:<host>:<pid>`) is alive here.
fn local_alive(runner: &str) -> bool {
    let Some(rest) = runner.strip_prefix("local:") else { return false };
    let Some((host, pid)) = rest.rsplit_once(':') else { return false };
    host == crate::machine::hostname() && Path::new("/proc").join(pid).is_dir()
}

fn partial(st: Stage) -> &'static str {
    match st {
        Stage::Interrupted => "training started; resumes from its last checkpoint",
        Stage::Trained => "trained, not tested",
        Stage::Tested => "tested, heat maps missing",
        _ => "",
    }
}

fn status_of(cell: &Cell, dir: &Path, tasks: &HashMap<String, String>, queue: &HashMap<String, String>, acct: Option<&HashMap<String, String>>) -> CellStatus {
    let label = cell.label();
    let st = stage(cell);
    let state = read_state(cell);
    let task = tasks.get(&label);
    let slurm_log = task.map(|t| slurm::task_log(dir, t));
    if st == Stage::Done {
        let s = state.unwrap_or_default();
        return CellStatus { label, state: State::Done, detail: format!("train {:.0} s, test {:.0} s", s.train_seconds, s.test_seconds), log: None };
    }
    if let Some(t) = task {
        if let Some(q) = queue.get(t) {
            let s = if q == "PENDING" { State::Pending } else { State::Running };
            return CellStatus { label, state: s, detail: format!("slurm task {t} ({q})"), log: slurm_log };
        }
    }
    if let Some(s) = &state {
        if s.status == "failed" {
            let first = s.error.as_deref().unwrap_or("").lines().next().unwrap_or("").to_string();
            return CellStatus { label, state: State::Failed, detail: first, log: s.log.clone().or(slurm_log) };
        }
        if s.status == "running" && s.runner.as_deref().is_some_and(local_alive) {
            return CellStatus { label, state: State::Running, detail: format!("{} ({})", s.runner.as_deref().unwrap_or(""), partial(st)), log: None };
        }
    }
    if let (None, Some(s)) = (task, &state) {
        if s.status == "interrupted" {
            let first = s.error.as_deref().unwrap_or("").lines().next().unwrap_or("").to_string();
            return CellStatus { label, state: State::Interrupted, detail: format!("{first}; {}", partial(st)), log: s.log.clone() };
        }
    }
    if let Some(t) = task {
        // The task left the queue without finishing its cell: accounting
        // says why (cancelled, timeout, preempted, node failure) where the
        // site keeps it.
        let why = acct.and_then(|a| a.get(t)).map(|s| s.as_str()).unwrap_or("no longer in the queue");
        let detail = match st {
            Stage::Fresh => format!("slurm task {t}: {why}, before training started"),
            _ => format!("slurm task {t}: {why}; {}", partial(st)),
        };
        return CellStatus { label, state: State::Interrupted, detail, log: slurm_log };
    }
    match st {
        Stage::Fresh => CellStatus { label, state: State::NotStarted, detail: String::new(), log: None },
        _ => CellStatus { label, state: State::Interrupted, detail: partial(st).to_string(), log: None },
    }
}

/// Every cell of `plan`, in plan order.
pub fn sweep_status(plan: &Plan) -> Result<Vec<CellStatus>> {
    let subs = slurm::read_submissions(&plan.dir)?;
    let tasks = slurm::latest_tasks(&subs);
    let queue = if subs.is_empty() { HashMap::new() } else { slurm::queue().unwrap_or_default() };
    let acct = slurm::accounting(&subs.iter().map(|s| s.job_id.clone()).collect::<Vec<_>>());
    Ok(plan.cells.iter().map(|c| status_of(c, &plan.dir, &tasks, &queue, acct.as_ref())).collect())
}

/// The status as a table, then one line of counts.
pub fn render(rows: &[CellStatus]) -> String {
    let w = rows.iter().map(|r| r.label.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:w$}  {:11}  detail\n", "cell", "state");
    for r in rows {
        let mut detail = r.detail.clone();
        if let Some(l) = &r.log {
            detail = if detail.is_empty() { format!("log: {}", l.display()) } else { format!("{detail}; log: {}", l.display()) };
        }
        out.push_str(&format!("{:w$}  {:11}  {detail}\n", r.label, r.state.name()));
    }
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// `3 cells: 2 done, 1 failed`.
pub fn summary(rows: &[CellStatus]) -> String {
    let mut counts: Vec<(State, usize)> = Vec::new();
    for r in rows {
        match counts.iter_mut().find(|(s, _)| *s == r.state) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.state, 1)),
        }
    }
    counts.sort();
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {}", s.name())).collect();
    format!("{} cells: {}", rows.len(), parts.join(", "))
}

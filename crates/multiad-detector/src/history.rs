//! `history.jsonl`: one line per finished epoch, for methods that train in
//! epochs; the sweeps plot it. Field names are Multi-AD's (L_G = the
//! distillation loss); methods with a single loss write it as `loss_g`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::run_dir::{write_atomic, RunDir};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    pub loss_g: f64,
    pub loss_adv: Option<f64>,
    pub loss_d: Option<f64>,
    pub loss_s: f64,
    pub seconds: f64,
}

pub fn append_history(run: &RunDir, e: &EpochLog) -> Result<()> {
    // Rewritten whole (atomically), dropping lines of epochs that a resumed
    // run repeats.
    let path = run.path("history.jsonl");
    let mut lines: Vec<EpochLog> = read_history(run)?;
    lines.retain(|l| l.epoch < e.epoch);
    lines.push(e.clone());
    let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    write_atomic(&path, text.as_bytes())
}

pub fn read_history(run: &RunDir) -> Result<Vec<EpochLog>> {
    let path = run.path("history.jsonl");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path)?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).with_context(|| format!("{}: bad line {l:?}", path.display()))).collect()
}

//! Reading finished cells back: the rows of every table and the data of
//! every chart come from here, never from memory of the run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use multiad_detector::history::{read_history, EpochLog};
use multiad_detector::{RunDir, TestMetrics, TrainingRecord};
use multiad_methods::MethodConfig;

use crate::cell_state::{heatmap_images, read_state, stage, CellState, Stage};
use crate::plan::{Cell, Plan};

/// One heat map of the grid.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub overlay: PathBuf,
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
    pub anomalous: bool,
}

/// Everything known about a finished cell.
#[derive(Debug, Clone)]
pub struct CellRecord {
    pub dataset: String,
    pub domain: Option<String>,
    pub method: String,
    pub study: Option<u8>,
    /// (SE, D, MFF) as configured (all off for methods other than Multi-AD).
    pub switches: (bool, bool, bool),
    pub seed: u64,
    /// `None` for methods that fit in one pass.
    pub epochs: Option<usize>,
    pub metrics: TestMetrics,
    pub training: TrainingRecord,
    pub state: CellState,
    pub history: Vec<EpochLog>,
    /// (anomalous, score) per test image.
    pub scores: Vec<(bool, f32)>,
    pub heatmaps: Vec<Heatmap>,
}

fn json<T: serde::de::DeserializeOwned>(p: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// `label` and `score` columns of a run's scores.csv (path is quoted when it
/// holds a comma, so fields are taken from the right).
fn read_scores(p: &std::path::Path) -> Result<Vec<(bool, f32)>> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.rsplitn(4, ',');
            let score: f32 = f.next().unwrap_or("").parse().with_context(|| format!("{}: bad score in {l:?}", p.display()))?;
            let _defect = f.next();
            let label = f.next().unwrap_or("") == "1";
            Ok((label, score))
        })
        .collect()
}

fn record(plan: &Plan, cell: &Cell) -> Result<CellRecord> {
    let run = RunDir::open(&cell.run_dir())?;
    let picks = heatmap_images(cell, &plan.data_root)?;
    let paths: Vec<PathBuf> = picks.iter().map(|p| p.image.clone()).collect();
    let names = multiad_detector::evaluate::output_names(&paths);
    let heatmaps = picks
        .iter()
        .zip(names)
        .map(|(p, n)| Heatmap {
            overlay: cell.dir.join("heatmaps").join(format!("{n}_heatmap.png")),
            image: p.image.clone(),
            mask: p.mask.clone(),
            anomalous: p.label.is_anomalous(),
        })
        .collect();
    let switches = match &cell.config {
        MethodConfig::Multiad(c) => (c.student.se, c.discriminator.enabled, c.inference.mff),
        _ => (false, false, false),
    };
    Ok(CellRecord {
        dataset: cell.dataset.clone(),
        domain: cell.domain.clone(),
        method: cell.method.clone(),
        study: cell.study,
        switches,
        seed: cell.config.seed(),
        epochs: cell.config.epochs(),
        metrics: json(&run.path("metrics.json"))?,
        training: json(&run.path("training.json"))?,
        state: read_state(cell).unwrap_or_default(),
        history: read_history(&run)?,
        scores: read_scores(&run.path("scores.csv"))?,
        heatmaps,
    })
}

/// Records of the finished cells of `plan`, in plan order.
pub fn collect(plan: &Plan) -> Result<Vec<CellRecord>> {
    plan.cells.iter().filter(|c| stage(c) == Stage::Done).map(|c| record(plan, c)).collect()
}

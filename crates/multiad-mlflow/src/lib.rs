//! Runs in MLflow: `multiad train|test --mlflow URI` (or
//! `MLFLOW_TRACKING_URI`) and the sweeps log each run through MLflow's REST
//! API after the local run is written:
//!
//! - params: the resolved config and the data set spec, flattened
//!   (`student.se = true`, `data.path = ...`);
//! - metrics: the losses and time of every epoch (`epoch/loss_g`, step =
//!   epoch), the training time and memory, the test metrics (`test/...`);
//! - artefacts: `config.yaml`, `metrics.json`, `scores.csv`, and the curves
//!   and panels when `--save-images` made them; a sweep's tables and charts.
//!
//! `<run>/mlflow.json` links the run directory to its MLflow run, so that
//! `train --resume` and `test` log into the same MLflow run and epochs are
//! never logged twice. The local run is written first and never depends on
//! the server: an unreachable server is a warning (`--mlflow-on-error
//! warn`, the default) or an error after the run is complete (`fail`).

pub mod client;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use multiad_detector::history::read_history;
use multiad_detector::{write_atomic, RunDir};
use serde::{Deserialize, Serialize};

use client::{now_ms, MAX_PARAM_VALUE};
pub use client::{Client, Metric};

/// What to do when the server cannot be reached or refuses a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Print a warning; the command succeeds.
    #[default]
    Warn,
    /// Fail the command (after the local run is complete).
    Fail,
}

impl std::str::FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "warn" => Ok(OnError::Warn),
            "fail" => Ok(OnError::Fail),
            _ => Err(format!("{s:?}: expected warn or fail")),
        }
    }
}

/// Where and how to log.
#[derive(Debug, Clone)]
pub struct Tracking {
    pub uri: String,
    pub experiment: String,
    /// Default: the run directory's name.
    pub run_name: Option<String>,
    pub on_error: OnError,
}

impl Tracking {
    /// `--mlflow URI`, else `MLFLOW_TRACKING_URI`; `None` when neither is set.
    pub fn from_args(uri: Option<String>, experiment: Option<String>, run_name: Option<String>, on_error: OnError) -> Option<Tracking> {
        let uri = uri.or_else(|| std::env::var("MLFLOW_TRACKING_URI").ok()).filter(|u| !u.is_empty())?;
        let experiment = experiment.or_else(|| std::env::var("MLFLOW_EXPERIMENT_NAME").ok()).unwrap_or_else(|| "multiad".into());
        Some(Tracking { uri, experiment, run_name, on_error })
    }

    /// Reports a logging outcome as the user asked: a warning, or an error
    /// that says the local run is complete.
    pub fn settle(&self, what: &Path, r: Result<()>) -> Result<()> {
        match (r, self.on_error) {
            (Ok(()), _) => Ok(()),
            (Err(e), OnError::Warn) => {
                eprintln!("warning: not logged to MLflow: {e:#}\n  (the local results in {} are complete)", what.display());
                Ok(())
            }
            (Err(e), OnError::Fail) => Err(e.context(format!("logging to MLflow failed; the local results in {} are complete", what.display()))),
        }
    }
}

/// `<dir>/mlflow.json`: which MLflow run a run (or sweep) directory logs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunLink {
    pub tracking_uri: String,
    pub experiment_id: String,
    pub run_id: String,
    pub artifact_uri: String,
    /// Epochs already logged (a resumed run logs only the new ones).
    #[serde(default)]
    pub logged_epochs: usize,
}

fn link_path(dir: &Path) -> PathBuf {
    dir.join("mlflow.json")
}

fn read_link(dir: &Path) -> Option<RunLink> {
    serde_json::from_str(&std::fs::read_to_string(link_path(dir)).ok()?).ok()
}

fn write_link(dir: &Path, l: &RunLink) -> Result<()> {
    write_atomic(&link_path(dir), serde_json::to_string_pretty(l)?.as_bytes())
}

/// YAML flattened into `a.b.c = value` params (lists as JSON), values cut
/// to MLflow's length limit.
pub fn flatten_yaml(prefix: &str, text: &str) -> Result<Vec<(String, String)>> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    let mut out = Vec::new();
    fn walk(prefix: &str, v: &serde_yaml_ng::Value, out: &mut Vec<(String, String)>) {
        use serde_yaml_ng::Value as Y;
        match v {
            Y::Mapping(m) => {
                for (k, v) in m {
                    let k = match k {
                        Y::String(s) => s.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
                    };
                    let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            Y::String(s) => out.push((prefix.to_string(), s.clone())),
            Y::Null => out.push((prefix.to_string(), "null".into())),
            Y::Bool(b) => out.push((prefix.to_string(), b.to_string())),
            Y::Number(n) => out.push((prefix.to_string(), n.to_string())),
            other => out.push((prefix.to_string(), serde_json::to_string(other).unwrap_or_default())),
        }
    }
    walk(prefix, &v, &mut out);
    for (_, v) in out.iter_mut() {
        if v.len() > MAX_PARAM_VALUE {
            let mut cut = MAX_PARAM_VALUE;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            v.truncate(cut);
        }
    }
    Ok(out)
}

/// The MLflow run of a run directory: the linked one, or a new one with the
/// config and data spec as params.
fn ensure_run(t: &Tracking, c: &Client, run: &RunDir) -> Result<RunLink> {
    if let Some(l) = read_link(&run.dir).filter(|l| l.tracking_uri == c.uri()) {
        return Ok(l);
    }
    let exp = c.experiment_id(&t.experiment)?;
    let name = t.run_name.clone().unwrap_or_else(|| run.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into()));
    let abs = std::fs::canonicalize(&run.dir).unwrap_or_else(|_| run.dir.clone());
    let config = std::fs::read_to_string(run.path("config.yaml")).with_context(|| format!("reading {}", run.path("config.yaml").display()))?;
    let method = multiad_detector::method_of(&config, &run.path("config.yaml")).unwrap_or_else(|_| "unknown".into());
    let (run_id, artifact_uri) = c.create_run(&exp, &name, &[("multiad.run_dir", abs.to_string_lossy().into_owned()), ("multiad.method", method)])?;
    let mut params = flatten_yaml("", &config)?;
    if let Ok(data) = std::fs::read_to_string(run.path("data.yaml")) {
        params.extend(flatten_yaml("data", &data)?);
    }
    c.log_batch(&run_id, &params, &[])?;
    let link = RunLink { tracking_uri: c.uri().to_string(), experiment_id: exp, run_id, artifact_uri, logged_epochs: 0 };
    write_link(&run.dir, &link)?;
    Ok(link)
}

/// The epochs not logged yet, and the training record.
fn log_epochs(c: &Client, run: &RunDir, link: &mut RunLink) -> Result<()> {
    let ts = now_ms();
    let history = read_history(run)?;
    let mut metrics = Vec::new();
    for e in history.iter().filter(|e| e.epoch > link.logged_epochs) {
        let step = e.epoch as i64;
        let mut push = |k: &str, v: f64| metrics.push(Metric { key: k.into(), value: v, step, timestamp: ts });
        push("epoch/loss_g", e.loss_g);
        push("epoch/loss_s", e.loss_s);
        if let Some(v) = e.loss_adv {
            push("epoch/loss_adv", v);
        }
        if let Some(v) = e.loss_d {
            push("epoch/loss_d", v);
        }
        push("epoch/seconds", e.seconds);
    }
    if let Ok(text) = std::fs::read_to_string(run.path("training.json")) {
        let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", run.path("training.json").display()))?;
        for k in ["seconds", "peak_rss_mib", "train_images"] {
            if let Some(x) = v[k].as_f64() {
                metrics.push(Metric { key: format!("train/{k}"), value: x, step: history.len() as i64, timestamp: ts });
            }
        }
    }
    c.log_batch(&link.run_id, &[], &metrics)?;
    link.logged_epochs = link.logged_epochs.max(history.iter().map(|e| e.epoch).max().unwrap_or(0));
    write_link(&run.dir, link)
}

/// After `multiad train`: params (first time), the new epochs, the training record.
pub fn log_training(t: &Tracking, run: &RunDir) -> Result<()> {
    let c = Client::new(&t.uri)?;
    let mut link = ensure_run(t, &c, run)?;
    log_epochs(&c, run, &mut link)?;
    c.set_tag(&link.run_id, "multiad.stage", "trained")?;
    c.set_status(&link.run_id, "FINISHED")
}

/// Files of a run directory uploaded as artefacts, under their relative path.
fn upload_files(c: &Client, link: &RunLink, root: &Path, rels: &[PathBuf]) -> Result<usize> {
    for rel in rels {
        let p = root.join(rel);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        c.upload(&link.artifact_uri, &rel.to_string_lossy(), &bytes)?;
    }
    Ok(rels.len())
}

/// `dir`'s files, relative to `root`, sorted (a missing dir: none).
fn files_under(root: &Path, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .map(|rd| rd.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).map(|e| Path::new(dir).join(e.file_name())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// After `multiad test`: the test metrics and the result files.
pub fn log_test(t: &Tracking, run: &RunDir) -> Result<()> {
    let c = Client::new(&t.uri)?;
    let mut link = ensure_run(t, &c, run)?;
    log_epochs(&c, run, &mut link)?;
    let text = std::fs::read_to_string(run.path("metrics.json")).with_context(|| format!("reading {}", run.path("metrics.json").display()))?;
    let m: serde_json::Value = serde_json::from_str(&text)?;
    let step = link.logged_epochs as i64;
    let ts = now_ms();
    let metrics: Vec<Metric> = ["image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max", "seconds"]
        .iter()
        .filter_map(|k| m[*k].as_f64().map(|v| Metric { key: format!("test/{k}"), value: v, step, timestamp: ts }))
        .collect();
    c.log_batch(&link.run_id, &[], &metrics)?;
    let mut files: Vec<PathBuf> = ["config.yaml", "metrics.json", "scores.csv"].iter().map(PathBuf::from).filter(|p| run.dir.join(p).is_file()).collect();
    files.extend(files_under(&run.dir, "curves"));
    files.extend(files_under(&run.dir, "images"));
    upload_files(&c, &link, &run.dir, &files)?;
    c.set_tag(&link.run_id, "multiad.stage", "tested")?;
    c.set_status(&link.run_id, "FINISHED")
}

/// A sweep's tables and charts as the artefacts of one MLflow run of its
/// own (`<sweep>/mlflow.json`), in the sweep's experiment.
pub fn log_sweep_outputs(t: &Tracking, sweep_dir: &Path, name: &str) -> Result<()> {
    let c = Client::new(&t.uri)?;
    let link = match read_link(sweep_dir).filter(|l| l.tracking_uri == c.uri()) {
        Some(l) => l,
        None => {
            let exp = c.experiment_id(&t.experiment)?;
            let (run_id, artifact_uri) = c.create_run(&exp, name, &[("multiad.sweep_dir", sweep_dir.to_string_lossy().into_owned())])?;
            let l = RunLink { tracking_uri: c.uri().to_string(), experiment_id: exp, run_id, artifact_uri, logged_epochs: 0 };
            write_link(sweep_dir, &l)?;
            l
        }
    };
    let mut files = files_under(sweep_dir, "tables");
    files.extend(files_under(sweep_dir, "charts"));
    upload_files(&c, &link, sweep_dir, &files)?;
    c.set_status(&link.run_id, "FINISHED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_flattens_into_dotted_params() {
        let p = flatten_yaml("", "a: 1\nb:\n  c: true\n  d: [1, 2]\ne: ~\nf: text\n").unwrap();
        let get = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("a"), Some("1"));
        assert_eq!(get("b.c"), Some("true"));
        assert_eq!(get("b.d"), Some("[1,2]"));
        assert_eq!(get("e"), Some("null"));
        assert_eq!(get("f"), Some("text"));
        let long = format!("x: {}\n", "é".repeat(4000));
        assert!(flatten_yaml("p", &long).unwrap()[0].1.len() <= MAX_PARAM_VALUE);
    }

    #[test]
    fn only_tracking_servers_are_accepted() {
        assert!(Client::new("file:///tmp/mlruns").err().unwrap().to_string().contains("http"));
        assert!(Client::new("http://127.0.0.1:5000/").is_ok());
    }
}

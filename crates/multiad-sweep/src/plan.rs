//! What a sweep command asks for, resolved into cells.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use multiad::ExperimentConfig;
use multiad_data::{DatasetSpec, Suite};
use multiad_methods::{MethodConfig, Overrides};
use multiad_nn::DeviceSpec;

use crate::paper::study_switches;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepKind {
    /// Table 4: the eight SE/D/MFF studies of Multi-AD.
    Ablation,
    /// Tables 2/3: every method of the suite.
    Benchmark,
}

impl SweepKind {
    pub fn name(self) -> &'static str {
        match self {
            SweepKind::Ablation => "ablation",
            SweepKind::Benchmark => "benchmark",
        }
    }
}

/// The command line of `cargo xtask ablation|benchmark`. A plan keeps it
/// with every path made absolute, and `sweep.json` stores it, so that a
/// Slurm array task on another node rebuilds the same plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepArgs {
    pub kind: SweepKind,
    /// A suite name (`experiments/suites/<name>.yaml`) or a suite YAML path.
    pub suite: String,
    /// A preset name (`experiments/<name>.yaml`) or an experiment YAML path.
    pub preset: String,
    pub data_root: PathBuf,
    /// Only these data sets of the suite (by name).
    pub datasets: Option<Vec<String>>,
    /// Only these studies (1-8) of an ablation.
    pub configs: Option<Vec<u8>>,
    pub jobs: usize,
    /// Default: `results/<kind>-<suite>-<preset>`.
    pub out: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub seed: Option<u64>,
    /// Where every cell runs (`--device`); `None`: as each preset says.
    #[serde(default)]
    pub device: Option<DeviceSpec>,
    /// The repository's `experiments/` directory (names resolve there).
    pub experiments: PathBuf,
    /// Log every cell (and the tables) to MLflow.
    #[serde(default)]
    pub mlflow: Option<SweepTracking>,
}

/// `--mlflow` of a sweep: each cell's `multiad train|test` logs its run
/// (named by the cell's label) into one experiment; the tables and charts
/// go to a run of their own.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepTracking {
    pub uri: String,
    /// Default: `multiad-<kind>-<suite>-<preset>`.
    pub experiment: String,
    /// `warn` or `fail`.
    pub on_error: String,
}

impl SweepTracking {
    /// The flags a cell's `multiad train|test` gets.
    pub fn child_args(&self, run_name: &str) -> Vec<String> {
        ["--mlflow", &self.uri, "--mlflow-experiment", &self.experiment, "--mlflow-run-name", run_name, "--mlflow-on-error", &self.on_error]
            .map(String::from)
            .to_vec()
    }

    pub fn tracking(&self) -> multiad_mlflow::Tracking {
        multiad_mlflow::Tracking {
            uri: self.uri.clone(),
            experiment: self.experiment.clone(),
            run_name: None,
            on_error: self.on_error.parse().unwrap_or_default(),
        }
    }
}

/// One (data set, study or method) of a sweep.
#[derive(Debug, Clone)]
pub struct Cell {
    pub dataset: String,
    pub domain: Option<String>,
    pub spec: DatasetSpec,
    pub method: String,
    /// The Table 4 study (ablations only).
    pub study: Option<u8>,
    pub config: MethodConfig,
    pub dir: PathBuf,
}

impl Cell {
    /// `dataset/study-N` or `dataset/method`.
    pub fn label(&self) -> String {
        match self.study {
            Some(s) => format!("{}/study-{s}", self.dataset),
            None => format!("{}/{}", self.dataset, self.method),
        }
    }

    /// The `multiad` run directory inside the cell.
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: SweepKind,
    pub suite: Suite,
    pub suite_file: PathBuf,
    pub preset: String,
    pub data_root: PathBuf,
    pub dir: PathBuf,
    pub jobs: usize,
    pub cells: Vec<Cell>,
    /// What the plan was made from, paths absolute.
    pub args: SweepArgs,
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    Ok(std::env::current_dir().context("the current directory")?.join(p))
}

fn resolve(name_or_path: &str, dir: &Path, what: &str) -> Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let named = dir.join(format!("{name_or_path}.yaml"));
    if named.is_file() {
        return Ok(named);
    }
    let known: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
                .filter(|s| !s.starts_with('.'))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    bail!("no {what} {name_or_path:?}: not a file, and not one of {} in {}", known.join(", "), dir.display())
}

/// The config of a Table 4 study: the preset with SE, D and MFF switched.
/// MFF covers both halves of the module: the student's Eq 5 fusion and the
/// inference-time Ψ (Eq 14); off, the student has no fusion and maps are summed.
pub fn study_config(base: &ExperimentConfig, study: u8) -> Result<ExperimentConfig> {
    let Some((se, d, mff)) = study_switches(study) else { bail!("study {study}: Table 4 numbers its studies 1 to 8") };
    let mut c = base.clone();
    c.student.se = se;
    c.discriminator.enabled = d;
    c.student.fusion = mff;
    c.inference.mff = mff;
    Ok(c)
}

impl Plan {
    pub fn new(a: &SweepArgs) -> Result<Plan> {
        if a.jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        let suite_file = resolve(&a.suite, &a.experiments.join("suites"), "suite")?;
        let mut suite = Suite::from_yaml_file(&suite_file)?;
        if let Some(names) = &a.datasets {
            suite.select(names)?;
        }
        let preset_file = resolve(&a.preset, &a.experiments, "preset")?;
        let overrides = Overrides { seed: a.seed, epochs: a.epochs, device: a.device };
        let base = match multiad_methods::parse_file(&preset_file, overrides)? {
            MethodConfig::Multiad(c) => c,
            other => bail!("{}: the preset must be a Multi-AD experiment (it names method {:?})", preset_file.display(), other.method()),
        };
        let preset = preset_file.file_stem().unwrap().to_string_lossy().into_owned();
        let dir = a.out.clone().unwrap_or_else(|| PathBuf::from("results").join(format!("{}-{}-{preset}", a.kind.name(), suite.name)));

        let mut cells = Vec::new();
        for entry in &suite.datasets {
            let name = entry.spec.name();
            let base_dir = dir.join("cells").join(&name);
            match a.kind {
                SweepKind::Ablation => {
                    let studies = a.configs.clone().unwrap_or_else(|| (1..=8).collect());
                    for s in studies {
                        cells.push(Cell {
                            dataset: name.clone(),
                            domain: entry.domain.clone(),
                            spec: entry.spec.clone(),
                            method: "multiad".into(),
                            study: Some(s),
                            config: MethodConfig::Multiad(study_config(&base, s)?),
                            dir: base_dir.join(format!("study-{s}")),
                        });
                    }
                }
                SweepKind::Benchmark => {
                    for m in &suite.methods {
                        multiad_methods::info(m).map_err(|e| anyhow::anyhow!("{}: {e}", suite_file.display()))?;
                        let config = if m == multiad::METHOD {
                            MethodConfig::Multiad(base.clone())
                        } else {
                            let f = multiad_methods::preset_file(&a.experiments, m, &preset);
                            if !f.is_file() {
                                bail!("method {m:?} has no {preset:?} preset: {} does not exist", f.display());
                            }
                            multiad_methods::parse_file(&f, overrides)?
                        };
                        cells.push(Cell {
                            dataset: name.clone(),
                            domain: entry.domain.clone(),
                            spec: entry.spec.clone(),
                            method: m.clone(),
                            study: None,
                            config,
                            dir: base_dir.join(m),
                        });
                    }
                }
            }
        }
        let data_root = std::fs::canonicalize(&a.data_root).with_context(|| format!("--data-root {}", a.data_root.display()))?;
        let args = SweepArgs {
            suite: absolute(&suite_file)?.to_string_lossy().into_owned(),
            preset: absolute(&preset_file)?.to_string_lossy().into_owned(),
            data_root: data_root.clone(),
            out: Some(absolute(&dir)?),
            experiments: absolute(&a.experiments)?,
            ..a.clone()
        };
        Ok(Plan { kind: a.kind, suite, suite_file, preset, data_root, dir, jobs: a.jobs, cells, args })
    }

    /// The plan of an existing sweep directory, rebuilt from its
    /// `sweep.json` (how `cargo xtask sweep status|collect|run-cell` and
    /// Slurm array tasks find the cells).
    pub fn from_sweep_dir(dir: &Path) -> Result<Plan> {
        let path = dir.join("sweep.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: not a sweep directory", path.display()))?;
        let meta: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let args: SweepArgs = serde_json::from_value(meta.get("args").cloned().unwrap_or_default())
            .with_context(|| format!("{}: no `args` (written by an older multiad; re-run the sweep command once)", path.display()))?;
        Plan::new(&SweepArgs { out: Some(absolute(dir)?), ..args })
    }

    /// The cell with this label (`dataset/study-N` or `dataset/method`).
    pub fn cell(&self, label: &str) -> Result<&Cell> {
        self.cells.iter().find(|c| c.label() == label).with_context(|| {
            format!("{}: no cell {label:?} (cells: {})", self.dir.display(), self.cells.iter().map(|c| c.label()).collect::<Vec<_>>().join(", "))
        })
    }
}

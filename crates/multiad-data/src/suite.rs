//! Suites: the data sets a sweep (ablation, benchmark) runs over, as a YAML
//! file in `experiments/suites/`. Each entry is a data set spec (any loader)
//! plus the page in `datasets/` that says where to get it, so that a missing
//! data set is reported before anything trains.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::folder::DatasetSpec;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SuiteEntry {
    #[serde(flatten)]
    pub spec: DatasetSpec,
    /// The `datasets/` page that says where the data come from and how to
    /// prepare them.
    #[serde(default)]
    pub docs: Option<String>,
    /// `medical` or `industrial`: which of the paper's columns this data set
    /// is averaged into (defaults to the suite's `domain`).
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The default domain of its data sets.
    #[serde(default)]
    pub domain: Option<String>,
    /// Methods a benchmark runs on every data set (registry names).
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    pub datasets: Vec<SuiteEntry>,
}

fn default_methods() -> Vec<String> {
    vec!["multiad".into()]
}

/// The file form: each entry is a spec written inline, or `file:` naming a
/// data set YAML (relative to the suite file) plus an optional `docs:`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    datasets: Vec<serde_yaml_ng::Value>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    file: PathBuf,
    #[serde(default)]
    docs: Option<String>,
    #[serde(default)]
    domain: Option<String>,
}

/// A data set of a suite that is not where the suite says.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingDataset {
    pub name: String,
    pub path: PathBuf,
    pub docs: Option<String>,
}

impl Suite {
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
        let raw: SuiteFile = serde_yaml_ng::from_str(&text).map_err(|e| DataError::file(path, format!("invalid suite: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut datasets = Vec::new();
        for (i, v) in raw.datasets.into_iter().enumerate() {
            let bad = |e: serde_yaml_ng::Error| DataError::file(path, format!("data set {} of the suite: {e}", i + 1));
            let by_file = v.as_mapping().is_some_and(|m| m.contains_key("file"));
            datasets.push(if by_file {
                let f: FileEntry = serde_yaml_ng::from_value(v).map_err(bad)?;
                SuiteEntry { spec: DatasetSpec::from_yaml_file(&dir.join(&f.file))?, docs: f.docs, domain: f.domain }
            } else {
                serde_yaml_ng::from_value(v).map_err(bad)?
            });
        }
        for d in &mut datasets {
            if d.domain.is_none() {
                d.domain = raw.domain.clone();
            }
            if let Some(dom) = &d.domain {
                if dom != "medical" && dom != "industrial" {
                    return Err(DataError::file(path, format!("data set {}: domain {dom:?} must be medical or industrial", d.spec.name())));
                }
            }
        }
        let suite = Suite { name: raw.name, description: raw.description, domain: raw.domain, methods: raw.methods, datasets };
        if suite.datasets.is_empty() {
            return Err(DataError::file(path, "suite lists no data sets"));
        }
        let mut names: Vec<String> = suite.datasets.iter().map(|d| d.spec.name()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(DataError::file(path, format!("two data sets are named {:?}; give them distinct `name`s", w[0])));
        }
        Ok(suite)
    }

    /// Keeps only the named data sets (in the suite's order); an unknown name
    /// is an error listing the suite's names.
    pub fn select(&mut self, names: &[String]) -> Result<()> {
        let known: Vec<String> = self.datasets.iter().map(|d| d.spec.name()).collect();
        if let Some(bad) = names.iter().find(|n| !known.contains(n)) {
            return Err(DataError::Other(format!("suite {} has no data set {bad:?} (it has: {})", self.name, known.join(", "))));
        }
        self.datasets.retain(|d| names.contains(&d.spec.name()));
        Ok(())
    }

    /// The data sets whose directory is missing under `data_root`.
    pub fn missing(&self, data_root: &Path) -> Vec<MissingDataset> {
        self.datasets
            .iter()
            .filter(|d| !data_root.join(d.spec.path()).is_dir())
            .map(|d| MissingDataset { name: d.spec.name(), path: data_root.join(d.spec.path()), docs: d.docs.clone() })
            .collect()
    }

    /// An error listing every missing data set with where to get it, or Ok.
    pub fn check_present(&self, data_root: &Path) -> Result<()> {
        let missing = self.missing(data_root);
        if missing.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = missing
            .iter()
            .map(|m| match &m.docs {
                Some(d) => format!("  {}: {} not found; see {d}", m.name, m.path.display()),
                None => format!("  {}: {} not found", m.name, m.path.display()),
            })
            .collect();
        Err(DataError::Other(format!(
            "suite {}: {} of {} data sets missing under {}:\n{}",
            self.name,
            missing.len(),
            self.datasets.len(),
            data_root.display(),
            lines.join("\n")
        )))
    }
}

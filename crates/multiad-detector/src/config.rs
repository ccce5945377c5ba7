//! A method's config file: YAML whose left-out keys take the method's
//! defaults (`#[serde(default)]` with a `Default` impl holding the paper's
//! recipe), parsed and checked with errors that name the file and the key.
//! A type that implements [`ConfigFile`] is a [`RunConfig`] for free.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::run_dir::RunConfig;

pub trait ConfigFile: Serialize + DeserializeOwned + Sized {
    /// The registry name: what the file's `method:` key holds.
    const METHOD: &'static str;

    /// Checks every value that could not work; the message names the key.
    fn validate(&self) -> std::result::Result<(), String>;

    /// Parses `text` (read from `path`, for messages) and validates it.
    fn from_yaml_str(text: &str, path: &Path) -> Result<Self> {
        let c: Self = serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        c.validate().map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
        Ok(c)
    }

    fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Self::from_yaml_str(&text, path)
    }

    /// Every key written out, defaults included.
    fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("config serialises")
    }
}

impl<T: ConfigFile> RunConfig for T {
    fn method(&self) -> &str {
        T::METHOD
    }
    fn to_yaml(&self) -> String {
        ConfigFile::to_yaml(self)
    }
}

/// The method a config file's text names (`method:`; absent = `multiad`).
pub fn method_of(text: &str, path: &Path) -> Result<String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).with_context(|| format!("{}", path.display()))?;
    match v.get("method") {
        None => Ok("multiad".into()),
        Some(serde_yaml_ng::Value::String(s)) => Ok(s.clone()),
        Some(other) => anyhow::bail!("{}: `method` must be a method name, got {other:?}", path.display()),
    }
}

/// The shipped preset file of `method` at `preset` scale:
/// `experiments/<preset>.yaml` for Multi-AD (the default method),
/// `experiments/methods/<method>/<preset>.yaml` for the others.
pub fn preset_file(experiments: &Path, method: &str, preset: &str) -> PathBuf {
    if method == "multiad" {
        experiments.join(format!("{preset}.yaml"))
    } else {
        experiments.join("methods").join(method).join(format!("{preset}.yaml"))
    }
}

/// The checks every feature-based config makes: its `method:` key, a square
/// input divisible by the deepest stride, increasing backbone levels.
pub fn check_common(expected: &str, method: &str, image_size: u32, layers: &[usize]) -> std::result::Result<(), String> {
    if method != expected {
        return Err(format!("`method` must be {expected:?} in this config, got {method:?}"));
    }
    if image_size == 0 || image_size % 32 != 0 {
        return Err(format!("`image_size` must be a positive multiple of 32, got {image_size}"));
    }
    if layers.is_empty() || layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("`layers` must be a non-empty increasing list of levels, got {layers:?}"));
    }
    Ok(())
}

/// `Ok` when `v` is a positive finite number, else the message naming `key`.
pub fn positive(key: &str, v: f64) -> std::result::Result<(), String> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(format!("`{key}` must be positive, got {v}"))
    }
}

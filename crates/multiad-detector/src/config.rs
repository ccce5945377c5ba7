//! A method's config file: YAML whose left-out keys take the method's
//! defaults (its `Default` impl, holding the paper's recipe), parsed and
//! checked with errors that name the file and the key.
//! A type that implements [`ConfigFile`] is a [`RunConfig`] for free.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use crate::run_dir::RunConfig;

pub trait ConfigFile: Serialize + DeserializeOwned + Default + Sized {
    /// The registry name: what the file's `method:` key holds.
    const METHOD: &'static str;

    /// Checks every value that could not work; the message names the key.
    fn validate(&self) -> std::result::Result<(), String>;

    /// Parses `text` (read from `path`, for messages) and validates it.
    ///
    /// The file is laid over the method's defaults key by key: a top-level
    /// key left out keeps `Self::default()`'s value, so the defaults of keys
    /// that several methods share through a `#[serde(flatten)]` struct stay
    /// each method's own. That is also why unknown keys are refused here
    /// (serde's `deny_unknown_fields` does not work beside `flatten`).
    fn from_yaml_str(text: &str, path: &Path) -> Result<Self> {
        let at = |m: String| anyhow::anyhow!("{}: {m}", path.display());
        let file: Value = serde_yaml_ng::from_str(text).map_err(|e| at(e.to_string()))?;
        let file = match file {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            other => return Err(at(format!("a config file is a mapping of keys to values, got {other:?}"))),
        };
        let defaults = serde_yaml_ng::to_value(Self::default()).expect("config serialises");
        let Value::Mapping(mut merged) = defaults.clone() else { panic!("a config serialises to a mapping") };
        for (k, v) in file.iter() {
            if !merged.contains_key(k) {
                let known: Vec<String> = merged.keys().map(key_text).collect();
                return Err(at(format!("unknown key `{}`; the keys are {}", key_text(k), known.join(", "))));
            }
            merged.insert(k.clone(), v.clone());
        }
        let c: Self = serde_yaml_ng::from_value(Value::Mapping(merged)).map_err(|e| {
            let mut key = Vec::new();
            match first_bad_key::<Self>(&defaults, &file, &mut key) {
                true => at(format!("`{}`: {e}", key.iter().map(key_text).collect::<Vec<_>>().join("."))),
                false => at(e.to_string()),
            }
        })?;
        c.validate().map_err(at)?;
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

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_string(),
    }
}

/// Finds the key (a path, outermost first, left in `key`) of the first value
/// in `file` that `T` refuses when it alone is laid over `defaults`. The
/// deserialiser's own message loses the key once a value went through a
/// `Value` (and through `flatten`), so the key is found by trying each one.
fn first_bad_key<T: DeserializeOwned>(defaults: &Value, file: &Mapping, key: &mut Vec<Value>) -> bool {
    for (k, v) in file {
        key.push(k.clone());
        let mut trial = defaults.clone();
        set_at(&mut trial, key, v.clone());
        if serde_yaml_ng::from_value::<T>(trial).is_err() {
            // Narrow it down inside a nested mapping; else this key is it.
            if let Value::Mapping(inner) = v {
                first_bad_key::<T>(defaults, inner, key);
            }
            return true;
        }
        key.pop();
    }
    false
}

/// `root[path[0]][path[1]]... = v`, making mappings on the way.
fn set_at(root: &mut Value, path: &[Value], v: Value) {
    let mut here = root;
    for k in &path[..path.len() - 1] {
        if !here.is_mapping() {
            *here = Value::Mapping(Mapping::new());
        }
        here = here.as_mapping_mut().expect("made a mapping").entry(k.clone()).or_insert(Value::Null);
    }
    if !here.is_mapping() {
        *here = Value::Mapping(Mapping::new());
    }
    here.as_mapping_mut().expect("made a mapping").insert(path[path.len() - 1].clone(), v);
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

/// `Ok` when `v` is a positive finite number, else the message naming `key`.
pub fn positive(key: &str, v: f64) -> std::result::Result<(), String> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(format!("`{key}` must be positive, got {v}"))
    }
}

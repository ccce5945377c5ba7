//! A run directory: everything one training run wrote, so that `test`,
//! `predict` and resumption need nothing else.
//!
//! ```text
//! config.yaml            the resolved experiment (every default written out);
//!                        its `method:` key names the detector (default multiad)
//! data.yaml              the data set spec and its absolute root
//! checkpoint.safetensors (methods that train) state after every epoch
//! checkpoint.prev.safetensors   the one before, for a torn latest file
//! history.jsonl          (methods that train) one line per finished epoch
//! model.safetensors      the fitted model (Multi-AD also writes fusion.json)
//! training.json          written last: marks training as finished
//! metrics.json, scores.csv, maps.npy   from `multiad test`
//! ```
//! Every file is written to a temporary name and renamed into place.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use multiad_data::DatasetSpec;
use serde::{Deserialize, Serialize};

/// A method's resolved configuration, as stored in a run's config.yaml.
pub trait RunConfig {
    /// The registry name of the method (the file's `method:` key).
    fn method(&self) -> &str;
    /// Every key written out, defaults included.
    fn to_yaml(&self) -> String;
}

/// The data a run trains and tests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRef {
    pub root: PathBuf,
    pub spec: DatasetSpec,
}

impl DataRef {
    /// `path` is either a data set directory (MVTec AD or BMAD layout, told
    /// apart by its contents) or a data set YAML file
    /// (whose `path` is relative to `data_root`).
    pub fn from_arg(path: &Path, data_root: &Path) -> Result<Self> {
        if path.is_dir() {
            let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
            return Ok(Self { root: PathBuf::from("/"), spec: DatasetSpec::for_directory(&abs) });
        }
        if !path.is_file() {
            bail!("{}: no such data set directory or spec file", path.display());
        }
        let spec = DatasetSpec::from_yaml_file(path)?;
        let root = std::fs::canonicalize(data_root).with_context(|| format!("--data-root {}", data_root.display()))?;
        Ok(Self { root, spec })
    }

    pub fn load(&self) -> Result<multiad_data::Dataset> {
        Ok(self.spec.load(&self.root)?)
    }
}

/// Writes `bytes` to `path` atomically: a temporary file, flushed to disk,
/// renamed into place. A failed write (a full disk) removes the temporary
/// file, so no half-written file is ever left under a finished name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::from(e).context(format!("writing {}", path.display())));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Writes tensors to a safetensors file atomically, as [`write_atomic`] does
/// bytes: temporary file, flushed, renamed; removed again when writing fails.
pub fn save_tensors_atomic(tensors: &std::collections::HashMap<String, candle_core::Tensor>, path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    let written = candle_core::safetensors::save(tensors, &tmp).map_err(anyhow::Error::from).and_then(|()| Ok(std::fs::File::open(&tmp)?.sync_all()?));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", path.display())));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Flushes a directory's entries (the renames into it) to disk. Best effort:
/// some filesystems refuse to open a directory for syncing.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A sibling temporary name for `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

pub struct RunDir {
    pub dir: PathBuf,
}

impl RunDir {
    /// Starts a new run. Refuses a directory that already holds anything, so
    /// that a finished run is never overwritten.
    pub fn create(dir: &Path, cfg: &dyn RunConfig, data: &DataRef) -> Result<Self> {
        if dir.exists() {
            let nonempty = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true);
            if nonempty {
                if dir.join("config.yaml").exists() {
                    bail!("{} already holds a run; pass --resume to continue it, or choose another --out", dir.display());
                }
                bail!("{} exists and is not empty; choose another --out", dir.display());
            }
        }
        // Staged in a hidden sibling and renamed into place (over an empty
        // directory, if one is there), so that an interrupted start leaves
        // either no run or a whole one, never a directory `--resume` refuses
        // and a fresh start refuses too.
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        let stage = tmp_path(dir);
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir(&stage).with_context(|| format!("creating {}", stage.display()))?;
        let staged = Self { dir: stage.clone() };
        let written = write_atomic(&staged.path("data.yaml"), serde_yaml_ng::to_string(data)?.as_bytes())
            .and_then(|()| write_atomic(&staged.path("config.yaml"), cfg.to_yaml().as_bytes()))
            .and_then(|()| std::fs::rename(&stage, dir).with_context(|| format!("moving {} into place", dir.display())));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&stage);
            return Err(e);
        }
        sync_dir(&parent);
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("config.yaml").is_file() {
            bail!("{} is not a run directory (no config.yaml); create one with `multiad train`", dir.display());
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The text of config.yaml (each method parses its own).
    pub fn config_text(&self) -> Result<String> {
        let p = self.path("config.yaml");
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// The method that config.yaml names; `multiad` when it names none
    /// (runs written before there were other methods).
    pub fn method(&self) -> Result<String> {
        crate::config::method_of(&self.config_text()?, &self.path("config.yaml"))
    }

    pub fn data(&self) -> Result<DataRef> {
        let p = self.path("data.yaml");
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_yaml_ng::from_str(&text).with_context(|| format!("{}", p.display()))
    }

    /// The run's config.yaml as a method's config type.
    pub fn read_config<C: crate::ConfigFile>(&self) -> Result<C> {
        C::from_yaml_file(&self.path("config.yaml"))
    }

    pub fn is_trained(&self) -> bool {
        self.path("training.json").is_file()
    }
}

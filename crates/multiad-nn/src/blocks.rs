//! ResNet's trainable units, shared by the networks trained here (the
//! students of STFPM and Multi-AD, RD4AD's bottleneck and decoder). The
//! frozen teachers' units are in `multiad-backbones`, with folded batch norm.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{Module, VarBuilder};

use crate::{BatchNorm, Conv2d, ConvSpec};

/// A convolution and the batch norm after it, their tensors under two names
/// of the caller's choosing (`conv1` and `bn1`, `downsample.0` and
/// `downsample.1`, as in torchvision), so checkpoints keep their layout.
pub struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm,
}

impl ConvBn {
    pub fn new(spec: ConvSpec, conv: VarBuilder, bn: VarBuilder) -> Result<Self> {
        let channels = spec.cout;
        Ok(Self { conv: Conv2d::new(spec, conv)?, bn: BatchNorm::torch_default(channels, bn)? })
    }

    /// BN(conv(x)), with batch statistics when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_t(&self.conv.forward(x)?, train)
    }

    /// ReLU(BN(conv(x))), the ReLU fused into the batch norm.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.bn.forward_relu_t(&self.conv.forward(x)?, train)
    }
}

/// A residual block's shortcut: the identity, or, where the block changes
/// the width or the resolution, torchvision's projection `downsample`
/// (a 1x1 convolution with the block's stride, then batch norm).
pub struct Shortcut(Option<ConvBn>);

impl Shortcut {
    /// The shortcut from `cin` to `cout` channels at `stride`; a projection's
    /// tensors are `downsample.0` and `downsample.1` under `vb`.
    pub fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        if stride == 1 && cin == cout {
            return Ok(Self(None));
        }
        Ok(Self(Some(ConvBn::new(ConvSpec::new(cin, cout, 1).stride(stride), vb.pp("downsample.0"), vb.pp("downsample.1"))?)))
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.0 {
            Some(p) => p.forward_t(x, train),
            None => Ok(x.clone()),
        }
    }
}

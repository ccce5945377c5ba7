//! ResNet-18/50 and WideResNet-50-2 with torchvision's tensor names.

use candle_core::{Result, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use multiad_nn::{max_pool2d, Activation};

use crate::{ConvBn, FeatureExtractor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetKind {
    ResNet18,
    ResNet50,
    WideResNet50_2,
}

impl ResNetKind {
    fn blocks(self) -> [usize; 4] {
        match self {
            ResNetKind::ResNet18 => [2, 2, 2, 2],
            _ => [3, 4, 6, 3],
        }
    }

    fn bottleneck(self) -> bool {
        self != ResNetKind::ResNet18
    }

    /// Inner width of a bottleneck relative to `planes` (2 for the wide net).
    fn width_factor(self) -> usize {
        if self == ResNetKind::WideResNet50_2 {
            2
        } else {
            1
        }
    }

    /// Output channels of layer1..layer4.
    pub fn channels(self) -> [usize; 4] {
        if self.bottleneck() {
            [256, 512, 1024, 2048]
        } else {
            [64, 128, 256, 512]
        }
    }
}

const BN_EPS: f64 = 1e-5;

fn conv_cfg(stride: usize, padding: usize) -> Conv2dConfig {
    Conv2dConfig { stride, padding, ..Default::default() }
}

enum Block {
    Basic { c1: ConvBn, c2: ConvBn, down: Option<ConvBn> },
    Bottleneck { c1: ConvBn, c2: ConvBn, c3: ConvBn, down: Option<ConvBn> },
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The last convolution's tail takes the shortcut and the ReLU in
        // the same pass.
        let (y, last, down) = match self {
            Block::Basic { c1, c2, down } => (c1.forward_act(x, None, Activation::Relu)?, c2, down),
            Block::Bottleneck { c1, c2, c3, down } => (c2.forward_act(&c1.forward_act(x, None, Activation::Relu)?, None, Activation::Relu)?, c3, down),
        };
        let short = match down {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        last.forward_act(&y, Some(&short), Activation::Relu)
    }
}

pub struct ResNet {
    kind: ResNetKind,
    stem: ConvBn,
    layers: Vec<Vec<Block>>,
}

impl ResNet {
    /// Builds the network from `vb` (torchvision names at its root).
    pub fn new(kind: ResNetKind, vb: VarBuilder) -> Result<Self> {
        let stem = ConvBn::new(3, 64, 7, conv_cfg(2, 3), BN_EPS, vb.pp("conv1"), vb.pp("bn1"))?;
        let mut cin = 64;
        let mut layers = Vec::new();
        for (li, (&n, planes)) in kind.blocks().iter().zip([64, 128, 256, 512]).enumerate() {
            let lvb = vb.pp(format!("layer{}", li + 1));
            let mut blocks = Vec::new();
            for bi in 0..n {
                let b = lvb.pp(bi.to_string());
                let stride = if bi == 0 && li > 0 { 2 } else { 1 };
                let cout = if kind.bottleneck() { planes * 4 } else { planes };
                let down = if bi == 0 && (stride != 1 || cin != cout) {
                    Some(ConvBn::new(cin, cout, 1, conv_cfg(stride, 0), BN_EPS, b.pp("downsample.0"), b.pp("downsample.1"))?)
                } else {
                    None
                };
                let block = if kind.bottleneck() {
                    let w = planes * kind.width_factor();
                    Block::Bottleneck {
                        c1: ConvBn::new(cin, w, 1, conv_cfg(1, 0), BN_EPS, b.pp("conv1"), b.pp("bn1"))?,
                        c2: ConvBn::new(w, w, 3, conv_cfg(stride, 1), BN_EPS, b.pp("conv2"), b.pp("bn2"))?,
                        c3: ConvBn::new(w, cout, 1, conv_cfg(1, 0), BN_EPS, b.pp("conv3"), b.pp("bn3"))?,
                        down,
                    }
                } else {
                    Block::Basic {
                        c1: ConvBn::new(cin, cout, 3, conv_cfg(stride, 1), BN_EPS, b.pp("conv1"), b.pp("bn1"))?,
                        c2: ConvBn::new(cout, cout, 3, conv_cfg(1, 1), BN_EPS, b.pp("conv2"), b.pp("bn2"))?,
                        down,
                    }
                };
                blocks.push(block);
                cin = cout;
            }
            layers.push(blocks);
        }
        Ok(Self { kind, stem, layers })
    }

    pub fn kind(&self) -> ResNetKind {
        self.kind
    }

    /// Features after layer1..=layer`upto` (1-4); deeper layers are not computed.
    pub fn layers_upto(&self, x: &Tensor, upto: usize) -> Result<Vec<Tensor>> {
        let mut h = max_pool2d(&self.stem.forward_act(x, None, Activation::Relu)?, 3, 2, 1)?;
        let mut out = Vec::new();
        for layer in self.layers.iter().take(upto) {
            for b in layer {
                h = b.forward(&h)?;
            }
            out.push(h.clone());
        }
        Ok(out)
    }
}

impl FeatureExtractor for ResNet {
    fn features_upto(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
        self.layers_upto(x, n)
    }

    fn levels(&self) -> Vec<(usize, usize)> {
        self.kind.channels().iter().zip([4, 8, 16, 32]).map(|(&c, s)| (c, s)).collect()
    }
}

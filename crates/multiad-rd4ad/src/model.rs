//! RD4AD's trainable networks: the one-class bottleneck embedding (OCBE:
//! multi-scale feature fusion, then residual blocks down to one compact
//! embedding) and the reverse-distillation decoder (residual blocks that
//! upsample with 2x2 transposed convolutions back to the encoder's levels).
//! Widths follow the encoder's levels, so the same code builds the paper's
//! WideResNet-50-2 pair and the smaller `cpu`/`smoke` ones.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{Module, VarBuilder};
use multiad_nn::{BatchNorm, Conv2d, ConvBn, ConvSpec, ConvTranspose2x2, Shortcut};

/// A residual bottleneck (1x1, 3x3 with stride, 1x1), as in ResNet.
struct Bottleneck {
    a: ConvBn,
    b: ConvBn,
    c: ConvBn,
    shortcut: Shortcut,
}

impl Bottleneck {
    fn new(cin: usize, width: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        // The shortcut first: parameters are drawn from the seed in creation order.
        Ok(Self {
            shortcut: Shortcut::new(cin, cout, stride, vb.clone())?,
            a: ConvBn::new(ConvSpec::new(cin, width, 1), vb.pp("conv1"), vb.pp("bn1"))?,
            b: ConvBn::new(ConvSpec::new(width, width, 3).stride(stride), vb.pp("conv2"), vb.pp("bn2"))?,
            c: ConvBn::new(ConvSpec::new(width, cout, 1), vb.pp("conv3"), vb.pp("bn3"))?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.b.forward_relu_t(&self.a.forward_relu_t(x, train)?, train)?;
        (self.c.forward_t(&h, train)? + self.shortcut.forward_t(x, train)?)?.relu()
    }
}

/// The decoder's bottleneck: its middle convolution is a 2x2 stride-2
/// transposed convolution when the block upsamples (the reference's `deBottleneck`).
struct DeBottleneck {
    a: ConvBn,
    mid: Mid,
    b2: BatchNorm,
    c: ConvBn,
    skip: Option<(Skip, BatchNorm)>,
}

enum Mid {
    Up(ConvTranspose2x2),
    Same(Conv2d),
}

enum Skip {
    Up(ConvTranspose2x2),
    Proj(Conv2d),
}

impl DeBottleneck {
    fn new(cin: usize, width: usize, cout: usize, up: bool, vb: VarBuilder) -> Result<Self> {
        let mid = if up {
            Mid::Up(ConvTranspose2x2::new(width, width, false, vb.pp("conv2"))?)
        } else {
            Mid::Same(Conv2d::new(ConvSpec::new(width, width, 3), vb.pp("conv2"))?)
        };
        let skip = if up {
            Some((Skip::Up(ConvTranspose2x2::new(cin, cout, false, vb.pp("upsample.0"))?), BatchNorm::torch_default(cout, vb.pp("upsample.1"))?))
        } else if cin != cout {
            Some((Skip::Proj(Conv2d::new(ConvSpec::new(cin, cout, 1), vb.pp("upsample.0"))?), BatchNorm::torch_default(cout, vb.pp("upsample.1"))?))
        } else {
            None
        };
        Ok(Self {
            a: ConvBn::new(ConvSpec::new(cin, width, 1), vb.pp("conv1"), vb.pp("bn1"))?,
            mid,
            b2: BatchNorm::torch_default(width, vb.pp("bn2"))?,
            c: ConvBn::new(ConvSpec::new(width, cout, 1), vb.pp("conv3"), vb.pp("bn3"))?,
            skip,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.a.forward_relu_t(x, train)?;
        let h = match &self.mid {
            Mid::Up(d) => d.forward(&h)?,
            Mid::Same(c) => c.forward(&h)?,
        };
        let h = self.c.forward_t(&self.b2.forward_relu_t(&h, train)?, train)?;
        let skip = match &self.skip {
            Some((Skip::Up(d), b)) => b.forward_t(&d.forward(x)?, train)?,
            Some((Skip::Proj(c), b)) => b.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        (h + skip)?.relu()
    }
}

/// Shapes of the pair, from the encoder's three levels.
#[derive(Debug, Clone)]
pub struct Shapes {
    /// Encoder channels, shallow to deep (strides s, 2s, 4s).
    pub levels: [usize; 3],
    /// Residual blocks of the embedding (reference: 3).
    pub oce_blocks: usize,
    /// Decoder blocks per stage, deep to shallow (reference: 3, 4, 6).
    pub decoder_blocks: [usize; 3],
    /// Inner width of a block = its output channels x this (wide ResNets: 0.5).
    pub width_ratio: f64,
}

impl Shapes {
    pub fn embedding(&self) -> usize {
        2 * self.levels[2]
    }
}

/// One-class bottleneck embedding.
pub struct Ocbe {
    /// The fusion's downsampling steps: 3x3 stride-2 convolution, BN, ReLU.
    d0a: ConvBn,
    d0b: ConvBn,
    d1: ConvBn,
    blocks: Vec<Bottleneck>,
}

impl Ocbe {
    pub fn new(s: &Shapes, vb: VarBuilder) -> Result<Self> {
        let [c0, c1, c2] = s.levels;
        let emb = s.embedding();
        let width = ((emb as f64 * s.width_ratio).round() as usize).max(1);
        let mut blocks = Vec::new();
        for i in 0..s.oce_blocks {
            let (cin, stride) = if i == 0 { (3 * c2, 2) } else { (emb, 1) };
            blocks.push(Bottleneck::new(cin, width, emb, stride, vb.pp(format!("bn_layer.{i}")))?);
        }
        Ok(Self {
            d0a: ConvBn::new(ConvSpec::new(c0, c1, 3).stride(2), vb.pp("conv1"), vb.pp("bn1"))?,
            d0b: ConvBn::new(ConvSpec::new(c1, c2, 3).stride(2), vb.pp("conv2"), vb.pp("bn2"))?,
            d1: ConvBn::new(ConvSpec::new(c1, c2, 3).stride(2), vb.pp("conv3"), vb.pp("bn3"))?,
            blocks,
        })
    }

    /// Encoder features (shallow to deep) -> the embedding (stride 8s).
    pub fn forward(&self, f: &[Tensor], train: bool) -> Result<Tensor> {
        let l0 = self.d0b.forward_relu_t(&self.d0a.forward_relu_t(&f[0], train)?, train)?;
        let l1 = self.d1.forward_relu_t(&f[1], train)?;
        let mut h = Tensor::cat(&[&l0, &l1, &f[2]], 1)?;
        for b in &self.blocks {
            h = b.forward(&h, train)?;
        }
        Ok(h)
    }
}

/// The reverse-distillation decoder.
pub struct Decoder {
    stages: Vec<Vec<DeBottleneck>>,
}

impl Decoder {
    pub fn new(s: &Shapes, vb: VarBuilder) -> Result<Self> {
        let mut cin = s.embedding();
        let mut stages = Vec::new();
        for (k, &n) in s.decoder_blocks.iter().enumerate() {
            let cout = s.levels[2 - k];
            let width = ((cout as f64 * s.width_ratio).round() as usize).max(1);
            let vbl = vb.pp(format!("layer{}", k + 1));
            let mut st = Vec::new();
            for i in 0..n.max(1) {
                st.push(DeBottleneck::new(cin, width, cout, i == 0, vbl.pp(i))?);
                cin = cout;
            }
            stages.push(st);
        }
        Ok(Self { stages })
    }

    /// The embedding -> features shaped like the encoder's, shallow to deep.
    pub fn forward(&self, emb: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut h = emb.clone();
        let mut out = Vec::new();
        for st in &self.stages {
            for b in st {
                h = b.forward(&h, train)?;
            }
            out.push(h.clone());
        }
        out.reverse();
        Ok(out)
    }
}

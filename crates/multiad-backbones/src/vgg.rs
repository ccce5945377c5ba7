//! VGG-16 (Simonyan & Zisserman) with torchvision's names (`features.0`,
//! `features.2`, ... `features.28`), as in `timm/vgg16.tv_in1k`: thirteen
//! 3x3 convolutions with ReLU in five blocks, each closed by 2x2 max-pooling.
//! Features: the five max-pool outputs (strides 2 to 32). MKD's source network.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use multiad_nn::{max_pool2d, Conv2d, ConvSpec};

use crate::FeatureExtractor;

/// Output channels of each block's convolutions.
const BLOCKS: [&[usize]; 5] = [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];

pub struct Vgg16 {
    blocks: Vec<Vec<Conv2d>>,
}

impl Vgg16 {
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let mut idx = 0; // torchvision's index into `features` (ReLU and pool count too)
        let mut cin = 3;
        let mut blocks = Vec::new();
        for convs in BLOCKS.iter() {
            let mut layer = Vec::new();
            for &c in convs.iter() {
                // Every layer passes gradients to its input: MKD's saliency
                // maps are gradients with respect to the image.
                layer.push(Conv2d::new(ConvSpec::new(cin, c, 3).bias(true), vb.pp(format!("features.{idx}")))?);
                cin = c;
                idx += 2; // conv, ReLU
            }
            idx += 1; // max-pool
            blocks.push(layer);
        }
        Ok(Self { blocks })
    }

    /// Max-pool outputs of the first `n` blocks; `relu` is applied after every
    /// convolution (a guided ReLU for saliency maps, or the plain one).
    pub fn blocks_upto(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
        let mut h = x.clone();
        let mut out = Vec::new();
        for layer in self.blocks.iter().take(n) {
            for conv in layer {
                h = conv.forward(&h)?.relu()?;
            }
            h = max_pool2d(&h, 2, 2, 0)?;
            out.push(h.clone());
        }
        Ok(out)
    }
}

impl FeatureExtractor for Vgg16 {
    fn levels(&self) -> Vec<(usize, usize)> {
        BLOCKS.iter().enumerate().map(|(i, b)| (*b.last().unwrap(), 2 << i)).collect()
    }

    fn features_upto(&self, x: &Tensor, n: usize) -> Result<Vec<Tensor>> {
        self.blocks_upto(x, n)
    }
}

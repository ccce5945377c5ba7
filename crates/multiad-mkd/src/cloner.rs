//! MKD's cloner: a VGG-like network, thinner than the source. As in the
//! reference's smaller configuration, every convolution is `width` wide
//! except the last of each block, which has the source's channels where
//! that block's output is compared; convolutions have no bias and are
//! followed by batch norm unless a max-pool comes next.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{Module, VarBuilder};
use multiad_nn::BatchNorm;
use multiad_nn::{guided_relu, max_pool2d, Conv2d, ConvSpec};

struct ConvUnit {
    conv: Conv2d,
    bn: Option<BatchNorm>,
}

pub struct Cloner {
    blocks: Vec<Vec<ConvUnit>>,
}

impl Cloner {
    /// `outputs[b]`: channels of block b's output (five blocks, strides 2..32);
    /// `convs[b]`: convolutions in block b (VGG-16: 2, 2, 3, 3, 3).
    pub fn new(outputs: &[usize], convs: &[usize], width: usize, vb: VarBuilder) -> Result<Self> {
        let mut cin = 3;
        let mut idx = 0;
        let mut blocks = Vec::new();
        for (&out, &n) in outputs.iter().zip(convs) {
            let mut units = Vec::new();
            for k in 0..n {
                let last = k + 1 == n;
                let c = if last { out } else { width };
                // No `first_layer()`: saliency maps need the input's gradient.
                let conv = Conv2d::new(ConvSpec::new(cin, c, 3), vb.pp(format!("features.{idx}")))?;
                let bn = if last { None } else { Some(BatchNorm::torch_default(c, vb.pp(format!("features.{}", idx + 1)))?) };
                idx += if last { 2 } else { 3 };
                units.push(ConvUnit { conv, bn });
                cin = c;
            }
            idx += 1;
            blocks.push(units);
        }
        Ok(Self { blocks })
    }

    /// Every block's max-pooled output; `guided` swaps in the ReLU of guided
    /// backpropagation (the forward values are the same).
    pub fn forward(&self, x: &Tensor, train: bool, guided: bool) -> Result<Vec<Tensor>> {
        let mut h = x.clone();
        let mut out = Vec::new();
        for units in &self.blocks {
            for u in units {
                h = u.conv.forward(&h)?;
                if let Some(bn) = &u.bn {
                    h = bn.forward_t(&h, train)?;
                }
                h = if guided { guided_relu(&h)? } else { h.relu()? };
            }
            h = max_pool2d(&h, 2, 2, 0)?;
            out.push(h.clone());
        }
        Ok(out)
    }
}

//! The student: ResNet-18's layout (7x7 stem, max-pool, stages of two basic
//! blocks), trained from scratch; stage l's width equals the teacher's
//! channels at its l-th matched level, so that features compare one to one.

use candle_core::{Result, Tensor};
use candle_nn::{Module, VarBuilder};
use multiad_nn::{max_pool2d, BatchNorm, Conv2d, ConvBn, ConvSpec, Shortcut};

struct BasicBlock {
    a: ConvBn,
    b: ConvBn,
    shortcut: Shortcut,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        // The shortcut first: parameters are drawn from the seed in creation order.
        Ok(Self {
            shortcut: Shortcut::new(cin, cout, stride, vb.clone())?,
            a: ConvBn::new(ConvSpec::new(cin, cout, 3).stride(stride), vb.pp("conv1"), vb.pp("bn1"))?,
            b: ConvBn::new(ConvSpec::new(cout, cout, 3), vb.pp("conv2"), vb.pp("bn2"))?,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.b.forward_t(&self.a.forward_relu_t(x, train)?, train)?;
        (h + self.shortcut.forward_t(x, train)?)?.relu()
    }
}

pub struct Student {
    stem: Conv2d,
    stem_bn: BatchNorm,
    stages: Vec<Vec<BasicBlock>>,
}

impl Student {
    /// `widths[l]` channels at stride 4·2^l; `blocks` basic blocks per stage.
    pub fn new(widths: &[usize], blocks: usize, stem: usize, vb: VarBuilder) -> Result<Self> {
        let mut stages = Vec::new();
        let mut cin = stem;
        for (l, &w) in widths.iter().enumerate() {
            let vbl = vb.pp(format!("layer{}", l + 1));
            let mut s = Vec::new();
            for b in 0..blocks {
                let stride = if b == 0 && l > 0 { 2 } else { 1 };
                s.push(BasicBlock::new(cin, w, stride, vbl.pp(b))?);
                cin = w;
            }
            stages.push(s);
        }
        Ok(Self {
            stem: Conv2d::new(ConvSpec::new(3, stem, 7).stride(2), vb.pp("conv1"))?.first_layer(),
            stem_bn: BatchNorm::torch_default(stem, vb.pp("bn1"))?,
            stages,
        })
    }

    /// Features after each stage.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let h = self.stem_bn.forward_relu_t(&self.stem.forward(x)?, train)?;
        let mut h = max_pool2d(&h, 3, 2, 1)?;
        let mut out = Vec::new();
        for s in &self.stages {
            for b in s {
                h = b.forward(&h, train)?;
            }
            out.push(h.clone());
        }
        Ok(out)
    }
}

//! The student: ResNet-18's layout (7x7 stem, max-pool, stages of two basic
//! blocks), trained from scratch; stage l's width equals the teacher's
//! channels at its l-th matched level, so that features compare one to one.

use candle_core::{ModuleT, Result, Tensor};
use candle_nn::{Module, VarBuilder};
use multiad_nn::BatchNorm;
use multiad_nn::{max_pool2d, Conv2d, ConvSpec};

fn bn(c: usize, vb: VarBuilder) -> Result<BatchNorm> {
    BatchNorm::new(c, 1e-5, 0.1, vb)
}

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    down: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let down = if stride != 1 || cin != cout {
            Some((Conv2d::new(ConvSpec::new(cin, cout, 1).stride(stride), vb.pp("downsample.0"))?, bn(cout, vb.pp("downsample.1"))?))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::new(ConvSpec::new(cin, cout, 3).stride(stride), vb.pp("conv1"))?,
            bn1: bn(cout, vb.pp("bn1"))?,
            conv2: Conv2d::new(ConvSpec::new(cout, cout, 3), vb.pp("conv2"))?,
            bn2: bn(cout, vb.pp("bn2"))?,
            down,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        let h = self.bn2.forward_t(&self.conv2.forward(&h)?, train)?;
        let skip = match &self.down {
            Some((c, b)) => b.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        (h + skip)?.relu()
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
        Ok(Self { stem: Conv2d::new(ConvSpec::new(3, stem, 7).stride(2), vb.pp("conv1"))?.first_layer(), stem_bn: bn(stem, vb.pp("bn1"))?, stages })
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

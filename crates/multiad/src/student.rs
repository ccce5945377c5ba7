//! The student: the "improved WideResNet" of Table 1. Same stage layout as
//! the teacher (stem to stride 4, then stages at strides 4, 8, 16, 32) so
//! that each critical layer has the teacher's shape, with
//! * dilated 3x3 convolutions, rate 1, 2, 4, 8 by stage (Eq 1), padding =
//!   rate so that shapes are those of the plain network;
//! * a squeeze-and-excitation block in every bottleneck (Eqs 2-4), applied to
//!   the residual branch before the shortcut is added, as in SE-ResNet;
//! * feature fusion (Eq 5): each stage output is concatenated with the
//!   bilinearly upsampled output of the stage above and passed through
//!   1x1 conv + BN + ReLU; the deepest stage is used as it is.
//!
//! Trained from scratch (Algorithm 1: "randomly initialise β_S").
//!
//! `student.layout: mbconv` swaps the bottleneck stages for EfficientNet-
//! Lite0's own stage table (a student shaped like the `cpu` teacher), with
//! the same SE and fusion.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use multiad_nn::affine::{channel_affine, plane_scale_residual, Activation};
use multiad_nn::{max_pool2d, resize_bilinear, Conv2d, ConvSpec};
use multiad_nn::{BatchNorm, ConvBn, Shortcut};

use crate::config::{StudentConfig, StudentPadding};

/// TensorFlow's "SAME" padding of a stride-2 layer whose kernel spans
/// `extent` pixels, on an even input: extent - 2 zeros in all, the extra one
/// after (below and to the right), so output i is centred on input 2i + 1.
fn pad_same_stride2(x: &Tensor, extent: usize) -> Result<Tensor> {
    let total = extent - 2;
    let (before, after) = (total / 2, total - total / 2);
    x.pad_with_zeros(2, before, after)?.pad_with_zeros(3, before, after)
}

/// Squeeze-and-excitation (Eqs 2-4): s = σ(τ2 · ReLU(τ1 · z)), x̂_c = s_c · x_c.
struct SqueezeExcite {
    fc1: Linear,
    fc2: Linear,
}

impl SqueezeExcite {
    fn new(c: usize, reduction: usize, vb: VarBuilder) -> Result<Self> {
        let hidden = (c / reduction).max(1);
        Ok(Self { fc1: candle_nn::linear(c, hidden, vb.pp("fc1"))?, fc2: candle_nn::linear(hidden, c, vb.pp("fc2"))? })
    }

    /// Eqs 2-3: the per-(image, channel) scales s; Eq 4 (x̂_c = s_c · x_c)
    /// is applied by the block, fused with its shortcut add.
    fn scales(&self, x: &Tensor) -> Result<Tensor> {
        let z = x.mean((2, 3))?; // Eq 2: global average pooling
        candle_nn::ops::sigmoid(&self.fc2.forward(&self.fc1.forward(&z)?.relu()?)?)
        // Eq 3
    }
}

struct Bottleneck {
    /// 1x1, then the dilated 3x3 with the block's stride, then 1x1.
    a: ConvBn,
    b: ConvBn,
    c: ConvBn,
    se: Option<SqueezeExcite>,
    shortcut: Shortcut,
    /// `student.padding: same` on a stride-2 block: conv2's kernel extent
    /// (2·rate + 1), padded as "SAME" by hand, and a shortcut that samples
    /// the odd pixels (centre 2i + 1, like the main branch).
    same_extent: Option<usize>,
}

impl Bottleneck {
    #[allow(clippy::too_many_arguments)]
    fn new(cin: usize, width: usize, cout: usize, stride: usize, dilation: usize, cfg: &StudentConfig, vb: VarBuilder) -> Result<Self> {
        // The shortcut first: parameters are drawn from the seed in creation order.
        let shortcut = Shortcut::new(cin, cout, stride, vb.clone())?;
        let same_extent = (cfg.padding == StudentPadding::Same && stride == 2).then_some(2 * dilation + 1);
        let pad2 = if same_extent.is_some() { 0 } else { dilation };
        Ok(Self {
            a: ConvBn::new(ConvSpec::new(cin, width, 1), vb.pp("conv1"), vb.pp("bn1"))?,
            b: ConvBn::new(ConvSpec::new(width, width, 3).padding(pad2).stride(stride).dilation(dilation), vb.pp("conv2"), vb.pp("bn2"))?,
            c: ConvBn::new(ConvSpec::new(width, cout, 1), vb.pp("conv3"), vb.pp("bn3"))?,
            se: if cfg.se { Some(SqueezeExcite::new(cout, cfg.se_reduction, vb.pp("se"))?) } else { None },
            shortcut,
            same_extent,
        })
    }

    /// `relu`: end in the ReLU after the shortcut add (ResNet's); false for
    /// a linear critical-layer output (`student.linear_outputs`).
    fn forward(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let h = self.a.forward_relu_t(x, train)?;
        let h = match self.same_extent {
            Some(e) => pad_same_stride2(&h, e)?,
            None => h,
        };
        let h = self.c.forward_t(&self.b.forward_relu_t(&h, train)?, train)?;
        // "SAME" blocks are stride 2, so their shortcut is a projection.
        let short = match self.same_extent {
            Some(_) => self.shortcut.forward_t(&x.narrow(2, 1, x.dim(2)? - 1)?.narrow(3, 1, x.dim(3)? - 1)?, train)?,
            None => self.shortcut.forward_t(x, train)?,
        };
        // Eq 4's scaling, the shortcut add and the ReLU in one pass.
        let act = if relu { Activation::Relu } else { Activation::Identity };
        match &self.se {
            Some(se) => plane_scale_residual(&h, &se.scales(&h)?, &short, act),
            None => channel_affine(&h, None, &vec![0.0; h.dim(1)?], Some(&short), act),
        }
    }
}

/// Eq 5: F_fused = ReLU(BN(ω * [F_low, F_up])) (without the ReLU under
/// `student.linear_outputs`).
struct Fuse {
    conv: Conv2d,
    bn: BatchNorm,
    relu: bool,
}

impl Fuse {
    /// ω * [F_low, up(F_up)] computed as ω_low * F_low + up(ω_up * F_up):
    /// a 1x1 convolution commutes with bilinear upsampling (both linear, one
    /// over channels, the other over positions), so the F_up half runs at
    /// F_up's resolution (4x fewer positions, upsampling the narrower
    /// result) and no concatenation is built. Same values up to rounding.
    fn mix(&self, low: &Tensor, up: &Tensor) -> Result<Tensor> {
        let (_, cl, h, w) = low.dims4()?;
        let wt = self.conv.weight();
        let y_low = multiad_nn::conv2d(low, &wt.narrow(1, 0, cl)?, 0, 1, 1)?;
        let y_up = multiad_nn::conv2d(up, &wt.narrow(1, cl, up.dim(1)?)?, 0, 1, 1)?;
        y_low + resize_bilinear(&y_up, h, w)?
    }

    fn forward(&self, low: &Tensor, up: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.mix(low, up)?;
        if self.relu {
            self.bn.forward_relu_t(&y, train)
        } else {
            self.bn.forward_t(&y, train)
        }
    }
}

/// One block of `student.layout: mbconv`, Lite0's inverted residual: 1x1
/// expansion (absent at ratio 1), k x k depthwise convolution with TF
/// "SAME" padding, linear 1x1 projection; BN after each, ReLU6 after the
/// first two; Eq 4's SE on the projection's output before the shortcut add,
/// where the bottleneck puts it.
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: Tensor,
    depthwise_bn: BatchNorm,
    stride: usize,
    project: ConvBn,
    se: Option<SqueezeExcite>,
    residual: bool,
}

fn relu6(bn: &BatchNorm, x: &Tensor, train: bool) -> Result<Tensor> {
    bn.forward_relu_t(x, train)?.minimum(6f32)
}

impl MbConv {
    fn new(cin: usize, cout: usize, kernel: usize, stride: usize, expand: usize, cfg: &StudentConfig, vb: VarBuilder) -> Result<Self> {
        let mid = cin * expand;
        let expand = if expand == 1 { None } else { Some(ConvBn::new(ConvSpec::new(cin, mid, 1), vb.pp("expand_conv"), vb.pp("bn0"))?) };
        let depthwise = vb.pp("depthwise_conv").get_with_hints((mid, 1, kernel, kernel), "weight", candle_nn::init::DEFAULT_KAIMING_NORMAL)?;
        Ok(Self {
            expand,
            depthwise,
            depthwise_bn: BatchNorm::torch_default(mid, vb.pp("bn1"))?,
            stride,
            project: ConvBn::new(ConvSpec::new(mid, cout, 1), vb.pp("project_conv"), vb.pp("bn2"))?,
            se: if cfg.se { Some(SqueezeExcite::new(cout, cfg.se_reduction, vb.pp("se"))?) } else { None },
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward_relu_t(x, train)?.minimum(6f32)?,
            None => x.clone(),
        };
        let h = relu6(&self.depthwise_bn, &multiad_nn::depthwise_conv2d_same(&h, &self.depthwise, self.stride)?, train)?;
        let h = self.project.forward_t(&h, train)?;
        match (&self.se, self.residual) {
            (Some(se), true) => plane_scale_residual(&h, &se.scales(&h)?, x, Activation::Identity),
            (Some(se), false) => h.broadcast_mul(&se.scales(&h)?.unsqueeze(2)?.unsqueeze(3)?),
            (None, true) => h + x,
            (None, false) => Ok(h),
        }
    }
}

/// The layers before the fusion: the student's own stages up to the four
/// critical layers.
enum Body {
    /// Table 1's improved WideResNet (`student.layout: bottleneck`).
    Bottleneck {
        stem: Conv2d,
        stem_bn: BatchNorm,
        stages: Vec<Vec<Bottleneck>>,
        linear_outputs: bool,
        /// `student.padding: same` (see [`StudentConfig::padding`]); `auto`
        /// is resolved against the teacher by `MultiAd::build` and means
        /// symmetric here.
        same: bool,
    },
    /// EfficientNet-Lite0's stage table (`student.layout: mbconv`).
    MbConv {
        stem: Conv2d,
        stem_bn: BatchNorm,
        blocks: Vec<MbConv>,
        /// Index of the block whose output is each critical layer.
        critical_ends: Vec<usize>,
    },
}

impl Body {
    /// The four critical layers before Eq 5; `fused` says whether Eq 5
    /// follows (then only the deepest stage is compared as it is).
    fn forward(&self, x: &Tensor, train: bool, fused: bool) -> Result<Vec<Tensor>> {
        match self {
            Body::Bottleneck { stem, stem_bn, stages, linear_outputs, same } => {
                let mut h = if *same {
                    // 7x7/2 and 3x3/2 padded as "SAME"; the pool's zeros act as -inf
                    // because its input is a ReLU's output.
                    let h = stem_bn.forward_relu_t(&stem.forward(&pad_same_stride2(x, 7)?)?, train)?;
                    max_pool2d(&pad_same_stride2(&h, 3)?, 3, 2, 0)?
                } else {
                    let h = stem_bn.forward_relu_t(&stem.forward(x)?, train)?;
                    max_pool2d(&h, 3, 2, 1)?
                };
                let mut outs = Vec::with_capacity(4);
                for (s, stage) in stages.iter().enumerate() {
                    // A stage's output is a critical layer itself when nothing fuses
                    // it (the deepest, or every stage without fusion).
                    let compared = !fused || s == 3;
                    for (i, b) in stage.iter().enumerate() {
                        let last = i + 1 == stage.len();
                        h = b.forward(&h, train, !(*linear_outputs && compared && last))?;
                    }
                    outs.push(h.clone());
                }
                Ok(outs)
            }
            Body::MbConv { stem, stem_bn, blocks, critical_ends } => {
                // Lite0's stem: 3x3/2, "SAME" (one zero row and column after).
                let mut h = relu6(stem_bn, &stem.forward(&pad_same_stride2(x, 3)?)?, train)?;
                let mut outs = Vec::with_capacity(4);
                for (i, b) in blocks.iter().enumerate().take(critical_ends[3] + 1) {
                    h = b.forward(&h, train)?;
                    if critical_ends.contains(&i) {
                        outs.push(h.clone());
                    }
                }
                Ok(outs)
            }
        }
    }
}

pub struct Student {
    body: Body,
    fuse: Vec<Fuse>,
    /// `reflect_pad` (see [`Student::framed`]); 0 unless set.
    reflect_pad: usize,
}

impl Student {
    /// `out_channels`: the teacher's critical-layer channels, shallow to
    /// deep. `student.layout: bottleneck` only; see [`Student::new_mbconv`].
    pub fn new(cfg: &StudentConfig, out_channels: [usize; 4], vb: VarBuilder) -> Result<Self> {
        let same = cfg.padding == StudentPadding::Same;
        // Not `first_layer()`: images never carry a gradient anyway, and the
        // grid test (tests/grid_alignment.rs) reads receptive fields off
        // the input gradient.
        let stem = Conv2d::new(ConvSpec::new(3, cfg.stem_channels, 7).padding(if same { 0 } else { 3 }).stride(2), vb.pp("conv1"))?;
        let stem_bn = BatchNorm::torch_default(cfg.stem_channels, vb.pp("bn1"))?;
        let mut cin = cfg.stem_channels;
        let mut stages = Vec::new();
        for (s, &cout) in out_channels.iter().enumerate().take(4) {
            let rate = if cfg.dilation { 1 << s } else { 1 };
            let mut blocks = Vec::new();
            for b in 0..cfg.blocks[s] {
                let stride = if b == 0 && s > 0 { 2 } else { 1 };
                let vbb = vb.pp(format!("layer{}.{b}", s + 1));
                blocks.push(Bottleneck::new(cin, cfg.widths[s], cout, stride, rate, cfg, vbb)?);
                cin = cout;
            }
            stages.push(blocks);
        }
        let body = Body::Bottleneck { stem, stem_bn, stages, linear_outputs: cfg.linear_outputs, same };
        Self::with_fusion(body, cfg, out_channels, vb)
    }

    /// `student.layout: mbconv`: EfficientNet-Lite0's stem and blocks up to
    /// the deepest critical level, freshly initialised; `critical_levels`
    /// are the teacher's (`teacher.layers`, Lite0 stage indices), so each
    /// critical layer is the output of the same stage in both networks;
    /// `student.mbconv_expand` replaces Lite0's six-fold expansion.
    pub fn new_mbconv(cfg: &StudentConfig, critical_levels: &[usize], vb: VarBuilder) -> Result<Self> {
        use multiad_backbones::efficientnet::STAGES;
        if critical_levels.len() != 4 || critical_levels.iter().any(|&l| l >= STAGES.len()) {
            candle_core::bail!("`student.layout: mbconv`: the critical layers must be four Lite0 stages (0-6), got {critical_levels:?}");
        }
        let stem_channels = STAGES[0].4;
        let stem = Conv2d::new(ConvSpec::new(3, stem_channels, 3).padding(0).stride(2), vb.pp("conv_stem"))?;
        let stem_bn = BatchNorm::torch_default(stem_channels, vb.pp("bn0"))?;
        let (mut blocks, mut stage_ends) = (Vec::new(), Vec::new());
        for &(repeats, k, stride, expand, cin, cout) in &STAGES[..=critical_levels[3]] {
            for r in 0..repeats {
                let (cin, stride) = if r == 0 { (cin, stride) } else { (cout, 1) };
                let expand = if expand == 1 { 1 } else { cfg.mbconv_expand };
                blocks.push(MbConv::new(cin, cout, k, stride, expand, cfg, vb.pp(format!("blocks.{}", blocks.len())))?);
            }
            stage_ends.push(blocks.len() - 1);
        }
        let out_channels = [0, 1, 2, 3].map(|i| STAGES[critical_levels[i]].5);
        let critical_ends = critical_levels.iter().map(|&l| stage_ends[l]).collect();
        Self::with_fusion(Body::MbConv { stem, stem_bn, blocks, critical_ends }, cfg, out_channels, vb)
    }

    /// Eq 5's fusion layers after `body` (`student.fusion`).
    fn with_fusion(body: Body, cfg: &StudentConfig, out_channels: [usize; 4], vb: VarBuilder) -> Result<Self> {
        let mut fuse = Vec::new();
        if cfg.fusion {
            for s in 0..3 {
                let f = vb.pp(format!("fuse{}", s + 1));
                fuse.push(Fuse {
                    conv: Conv2d::new(ConvSpec::new(out_channels[s] + out_channels[s + 1], out_channels[s], 1), f.pp("conv"))?,
                    bn: BatchNorm::torch_default(out_channels[s], f.pp("bn"))?,
                    relu: !cfg.linear_outputs,
                });
            }
        }
        Ok(Self { body, fuse, reflect_pad: 0 })
    }

    /// The same student run on images framed by `pad` px of their mirror
    /// image, its critical layers cropped back to the image's cells
    /// (`reflect_pad`, `frame.rs`): the teacher's framing, so that both
    /// compare the same cells.
    pub fn framed(self, pad: usize) -> Self {
        Self { reflect_pad: pad, ..self }
    }

    /// The four critical-layer features; `train` puts batch norm in training mode.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let framed = crate::frame::frame(x, self.reflect_pad)?;
        crate::frame::crop(self.forward_unframed(&framed, train)?, self.reflect_pad)
    }

    fn forward_unframed(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let outs = self.body.forward(x, train, !self.fuse.is_empty())?;
        if self.fuse.is_empty() {
            return Ok(outs);
        }
        let mut fused = Vec::with_capacity(4);
        for s in 0..3 {
            fused.push(self.fuse[s].forward(&outs[s], &outs[s + 1], train)?);
        }
        fused.push(outs[3].clone());
        Ok(fused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The split fusion equals Eq 5's convolution over the concatenation of
    /// F_low and the upsampled F_up, and passes the same gradients.
    #[test]
    fn fusion_split_equals_the_convolution_of_the_concatenation() {
        let dev = candle_core::Device::Cpu;
        let store = multiad_nn::ParamStore::new(3);
        let fuse = Fuse {
            conv: Conv2d::new(ConvSpec::new(6 + 10, 6, 1), store.var_builder(&dev).pp("conv")).unwrap(),
            bn: BatchNorm::torch_default(6, store.var_builder(&dev).pp("bn")).unwrap(),
            relu: true,
        };
        let low = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 6, 8, 10), &dev).unwrap()).unwrap();
        let up = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 10, 4, 5), &dev).unwrap()).unwrap();
        let ours = fuse.mix(low.as_tensor(), up.as_tensor()).unwrap();
        let cat = Tensor::cat(&[low.as_tensor(), &resize_bilinear(up.as_tensor(), 8, 10).unwrap()], 1).unwrap();
        let reference = fuse.conv.forward(&cat).unwrap();
        let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&ours, &reference) < 1e-5, "forward differs by {}", diff(&ours, &reference));
        let m = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        let g1 = (ours * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (reference * &m).unwrap().sum_all().unwrap().backward().unwrap();
        for t in [low.as_tensor(), up.as_tensor(), fuse.conv.weight()] {
            let (a, b) = (g1.get(t).unwrap(), g2.get(t).unwrap());
            assert!(diff(a, b) < 1e-4, "gradient differs by {}", diff(a, b));
        }
    }
}

//! The discriminator D (Eqs 9-10): four 3x3 convolutions (stride 1, padding
//! 1, no bias by default: BN follows) each with BN and LeakyReLU(0.2), dropout, flatten, one FC layer to a
//! single logit; the sigmoid is folded into the loss for numerical stability.
//!
//! Its input (the paper does not say which layers D sees): every critical
//! layer average-pooled to a grid x grid map (grid capped at the deepest
//! layer's size), optionally L2-normalised over channels, concatenated along
//! channels.
//!
//! `discriminator.spectral_norm` divides every convolution's and the FC
//! layer's weight by its largest singular value (Miyato et al. 2018). Eq 9's
//! batch norm stays: it removes any scale of the convolution before it, so
//! behind it only the FC layer's normalisation changes what D computes (its
//! logit is bounded by the norm of its input); the convolutions' changes
//! only how their gradients are scaled.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Linear, VarBuilder};
use multiad_nn::BatchNorm;
use multiad_nn::{Conv2d, ConvSpec, SpectralNorm};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{DiscInput, DiscriminatorConfig};
use crate::loss::l2_normalize_channels;

pub struct Discriminator {
    convs: Vec<(Conv2d, BatchNorm)>,
    fc: Linear,
    /// One per convolution, then the FC layer's, with `spectral_norm` on.
    sn: Option<Vec<SpectralNorm>>,
    grid: usize,
    cfg: DiscriminatorConfig,
}

impl Discriminator {
    /// `in_channels`: the four critical layers'; `deepest`: the side of the deepest one.
    pub fn new(cfg: &DiscriminatorConfig, in_channels: [usize; 4], deepest: usize, vb: VarBuilder) -> Result<Self> {
        let grid = cfg.grid.min(deepest).max(1);
        let mut cin: usize = in_channels.iter().sum();
        let mut convs = Vec::new();
        let mut sn = Vec::new();
        for (i, &c) in cfg.channels.iter().enumerate() {
            // No bias by default: batch norm removes any per-channel
            // constant, so a bias here has gradient 0 in exact arithmetic,
            // and Adam turns its float32 rounding noise (about 1e-9) into
            // steps of lr's size (found by the differential test).
            let conv = Conv2d::new(ConvSpec::new(cin, c, 3).bias(cfg.conv_bias), vb.pp(format!("conv{}", i + 1)))?;
            if cfg.spectral_norm {
                sn.push(SpectralNorm::new(c, vb.pp(format!("conv{}", i + 1)))?);
            }
            let bn = BatchNorm::torch_default(c, vb.pp(format!("bn{}", i + 1)))?;
            convs.push((conv, bn));
            cin = c;
        }
        let fc = candle_nn::linear(cin * grid * grid, 1, vb.pp("fc"))?;
        if cfg.spectral_norm {
            sn.push(SpectralNorm::new(1, vb.pp("fc"))?);
        }
        let sn = cfg.spectral_norm.then_some(sn);
        Ok(Self { convs, fc, sn, grid, cfg: cfg.clone() })
    }

    /// D's input from the four critical-layer features.
    pub fn prepare(&self, feats: &[Tensor]) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(feats.len());
        for f in feats {
            let (_, _, h, w) = f.dims4()?;
            let f = if self.cfg.input == DiscInput::Normalized { l2_normalize_channels(f)? } else { f.clone() };
            let (kh, kw) = (h / self.grid, w / self.grid);
            let p = if kh > 1 || kw > 1 { f.avg_pool2d((kh.max(1), kw.max(1)))? } else { f };
            parts.push(p);
        }
        Tensor::cat(&parts, 1)
    }

    /// Logits (before the sigmoid), shape (B,). `rng` draws the dropout mask
    /// when training, so that runs are reproducible by seed.
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let mut h = x.clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            let y = match &self.sn {
                Some(sn) => conv.forward_with_kernel(&h, &sn[i].normalize(conv.weight(), train)?)?,
                None => conv.forward(&h)?,
            };
            let y = bn.forward_t(&y, train)?;
            h = candle_nn::ops::leaky_relu(&y, self.cfg.leaky_slope)?;
        }
        let h = h.flatten_from(1)?;
        let h = if train && self.cfg.dropout > 0.0 { dropout(&h, self.cfg.dropout, rng)? } else { h };
        let logits = match &self.sn {
            Some(sn) => {
                let w = sn[self.convs.len()].normalize(self.fc.weight(), train)?;
                let y = h.matmul(&w.t()?)?;
                match self.fc.bias() {
                    Some(b) => y.broadcast_add(b)?,
                    None => y,
                }
            }
            None => self.fc.forward(&h)?,
        };
        logits.squeeze(1)
    }
}

/// Inverted dropout with a mask from our own seeded generator (candle's
/// dropout draws from an unseedable CPU generator).
fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.random::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 }).collect();
    x * Tensor::from_vec(mask, x.shape(), x.device())?
}

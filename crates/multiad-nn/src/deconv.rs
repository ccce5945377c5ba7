//! The 2x2, stride-2 transposed convolution of decoders (RD4AD's
//! `deconv2x2`): every input pixel writes one 2x2 output block, so it is a
//! 1x1 convolution to 4·C_out channels followed by a pixel shuffle. That
//! uses the fast gemm convolution both ways instead of candle's direct-loop
//! transposed convolution, and autograd gives the backward pass.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::conv::conv2d;

/// `x` (B, C_in, H, W), `w` in PyTorch's ConvTranspose2d layout
/// (C_in, C_out, 2, 2) -> (B, C_out, 2H, 2W).
pub fn conv_transpose2x2(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, _, h, wd) = x.dims4()?;
    let (cin, cout, kh, kw) = w.dims4()?;
    if (kh, kw) != (2, 2) {
        candle_core::bail!("conv_transpose2x2 needs a 2x2 kernel, got {kh}x{kw}");
    }
    // (C_in, C_out, 2, 2) -> (C_out·2·2, C_in, 1, 1), channel o·4 + dy·2 + dx.
    let k = w.permute((1, 2, 3, 0))?.reshape((cout * 4, cin, 1, 1))?;
    let y = conv2d(x, &k, 0, 1, 1)?; // (B, C_out·4, H, W)
    y.reshape((b, cout, 2, 2, h, wd))?.permute((0, 1, 4, 2, 5, 3))?.reshape((b, cout, 2 * h, 2 * wd))
}

/// A 2x2 stride-2 transposed convolution layer (weight `weight`, optional `bias`).
pub struct ConvTranspose2x2 {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl ConvTranspose2x2 {
    pub fn new(cin: usize, cout: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        // PyTorch's default: kaiming-uniform with a = sqrt(5) over fan_in = C_out·4
        // (its transposed layout), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        let bound = 1.0 / ((cout * 4) as f64).sqrt();
        let weight = vb.get_with_hints((cin, cout, 2, 2), "weight", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
        let bias = if bias { Some(vb.get_with_hints(cout, "bias", candle_nn::Init::Uniform { lo: -bound, up: bound })?) } else { None };
        Ok(Self { weight, bias })
    }
}

impl Module for ConvTranspose2x2 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = conv_transpose2x2(x, &self.weight)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn equals_candles_transposed_convolution_forward_and_backward() {
        let dev = Device::Cpu;
        for (b, cin, cout, h, w) in [(2, 3, 5, 4, 6), (1, 8, 2, 3, 3), (3, 1, 1, 1, 2)] {
            let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, cin, h, w), &dev).unwrap()).unwrap();
            let k = Var::from_tensor(&Tensor::randn(0f32, 1.0, (cin, cout, 2, 2), &dev).unwrap()).unwrap();
            let ours = conv_transpose2x2(x.as_tensor(), k.as_tensor()).unwrap();
            let theirs = x.as_tensor().conv_transpose2d(k.as_tensor(), 0, 0, 2, 1).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            assert!(close(&ours, &theirs) < 1e-4);
            // Gradients of a weighted sum agree for both inputs.
            let r = Tensor::randn(0f32, 1.0, ours.dims(), &dev).unwrap();
            let go = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (theirs * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &k] {
                assert!(close(go.get(v.as_tensor()).unwrap(), gt.get(v.as_tensor()).unwrap()) < 1e-3);
            }
        }
    }
}

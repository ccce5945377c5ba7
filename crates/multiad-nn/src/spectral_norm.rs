//! Spectral normalisation (Miyato et al., ICLR 2018): a weight W used as
//! W / σ(W), σ the largest singular value of W reshaped to (rows, rest),
//! estimated by one power iteration per training pass from a vector u kept
//! between passes. σ is computed as uᵀ W v with u and v held constant, so
//! the gradient flows through W in both W and σ(W), as in the paper.
//!
//! u is state, not a parameter: it lives in the store under `<name>.sn_u`
//! (like batch-norm statistics), is saved with the network and restored on
//! resumption, so a resumed run continues bit-identically.

use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

/// The power-iteration state of one weight.
pub struct SpectralNorm {
    u: Var,
}

/// ‖x‖₂ clamped away from 0 (a zero weight would otherwise give 0/0).
fn unit(x: &Tensor) -> Result<Tensor> {
    let n = x.sqr()?.sum_all()?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
    x.broadcast_div(&n)
}

impl SpectralNorm {
    /// `rows`: the weight's first dimension. u starts as a standard normal
    /// draw from the store's seeded generator, made a unit vector.
    pub fn new(rows: usize, vb: VarBuilder) -> Result<Self> {
        let u = vb.get_with_hints(rows, "sn_u", Init::Randn { mean: 0., stdev: 1. })?;
        let u = Var::from_tensor(&u)?;
        u.set(&unit(u.as_tensor())?)?;
        Ok(Self { u })
    }

    /// W / σ(W). In training one power iteration first refines u (and
    /// stores it); in evaluation the stored u is used as it is.
    pub fn normalize(&self, w: &Tensor, train: bool) -> Result<Tensor> {
        let rows = w.dim(0)?;
        let m = w.detach().reshape((rows, ()))?;
        let mut u = self.u.as_tensor().unsqueeze(1)?; // (rows, 1)
        let v = unit(&m.t()?.matmul(&u)?)?; // (rest, 1)
        if train {
            u = unit(&m.matmul(&v)?)?;
            self.u.set(&u.squeeze(1)?)?;
        }
        let sigma = u.t()?.matmul(&w.reshape((rows, ()))?.matmul(&v)?)?.reshape(())?;
        w.broadcast_div(&sigma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamStore;
    use candle_core::Device;

    /// After enough training passes σ is the largest singular value: the
    /// normalised weight's largest singular value is 1 (checked by a long
    /// power iteration of its own on WᵀW).
    #[test]
    fn normalised_weight_has_unit_spectral_norm() {
        let dev = Device::Cpu;
        let store = ParamStore::new(3);
        let vb = store.var_builder(&dev);
        let w = vb.get_with_hints((6, 4, 3, 3), "w", Init::Randn { mean: 0., stdev: 1. }).unwrap();
        let sn = SpectralNorm::new(6, vb.pp("w")).unwrap();
        let mut wn = w.clone();
        for _ in 0..30 {
            wn = sn.normalize(&w, true).unwrap();
        }
        let m = wn.reshape((6, ())).unwrap();
        let g = m.t().unwrap().matmul(&m).unwrap();
        let mut x = Tensor::ones((36, 1), candle_core::DType::F32, &dev).unwrap();
        for _ in 0..200 {
            x = unit(&g.matmul(&x).unwrap()).unwrap();
        }
        let lambda: f32 = x.t().unwrap().matmul(&g.matmul(&x).unwrap()).unwrap().reshape(()).unwrap().to_scalar().unwrap();
        assert!((lambda.sqrt() - 1.0).abs() < 1e-3, "largest singular value {}", lambda.sqrt());
        // u is state in the store, so it is saved with the network.
        assert!(store.tensors().contains_key("w.sn_u"));
        assert!(store.trainable().iter().all(|(k, _)| k != "w.sn_u"));
    }

    /// The gradient reaches W through σ as well: W / σ(W) does not change
    /// when W is scaled, so any loss of it has zero gradient along W itself
    /// (without the path through σ it would not).
    #[test]
    fn gradient_flows_through_sigma() {
        let dev = Device::Cpu;
        let store = ParamStore::new(5);
        let vb = store.var_builder(&dev);
        let w = Var::from_tensor(&vb.get_with_hints((3, 5), "w", Init::Randn { mean: 0., stdev: 1. }).unwrap()).unwrap();
        let sn = SpectralNorm::new(3, vb.pp("w")).unwrap();
        let c = vb.get_with_hints((3, 5), "c", Init::Randn { mean: 0., stdev: 1. }).unwrap();
        // L = <W / σ(W), C> for a constant C.
        let wn = sn.normalize(w.as_tensor(), true).unwrap();
        let l = (&wn * &c).unwrap().sum_all().unwrap();
        let g = l.backward().unwrap();
        let gw = g.get(w.as_tensor()).unwrap();
        let along: f32 = (gw * w.as_tensor()).unwrap().sum_all().unwrap().to_scalar().unwrap();
        let norm: f32 = gw.sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar().unwrap();
        assert!(norm > 1e-3, "the gradient is not zero overall");
        assert!(along.abs() < 1e-4 * norm.max(1.0), "gradient along W: {along}");
    }
}

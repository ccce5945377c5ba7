//! Losses: the distillation loss L_G (Eqs 6-8) and the adversarial losses
//! L_D and L_adv (Eqs 10-11), the latter computed from logits with
//! log-sigmoid so that saturated outputs give finite gradients.

use candle_core::{Result, Tensor, D};

/// Eq 6: F / ||F||_2 over channels at each position. Zero vectors (common
/// after a ReLU) are guarded by clamping the squared norm at ε² = 1e-16
/// *before* the square root: clamping after it would multiply sqrt's infinite
/// slope at 0 by the clamp's zero slope and make the gradient NaN.
pub fn l2_normalize_channels(f: &Tensor) -> Result<Tensor> {
    let norm = f.sqr()?.sum_keepdim(1)?.clamp(1e-16f32, f32::MAX)?.sqrt()?;
    f.broadcast_div(&norm)
}

/// 1 - cos(T, S) at every position of one critical layer: (B, 1, h, w).
/// Eq 13; the cosine of Eqs 6-7's normalised vectors, with the norm clamped
/// as in [`l2_normalize_channels`]. One fused op (`multiad_nn::cosine`).
pub fn cosine_distance_map(t: &Tensor, s: &Tensor) -> Result<Tensor> {
    multiad_nn::cosine_distance_map(t, s)
}

/// Eq 8: L_G = (1/P) Σ_i (1/Q_i) Σ_j (1 - cos(φ_T^(i,j), φ_S^(i,j))), the mean
/// over positions (and the batch) of each critical layer, then over layers.
pub fn distillation_loss(t: &[Tensor], s: &[Tensor]) -> Result<Tensor> {
    distillation_loss_hardest(t, s, 1.0)
}

/// Eq 8 over each critical layer's hardest cells only: the mean of 1 − cos
/// over the share `hard_share` of the batch's cells with the largest
/// distance (ties at the threshold included), then over layers
/// (`train.hard_share`; EfficientAD's hard feature loss, Batzner et al.
/// 2024, applied to Eq 13's per-cell distance). 1 is Eq 8 exactly (the same
/// operations). The threshold is a constant of the step: gradients flow
/// through the selected distances only.
pub fn distillation_loss_hardest(t: &[Tensor], s: &[Tensor], hard_share: f64) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (ft, fs) in t.iter().zip(s) {
        let d = cosine_distance_map(ft, fs)?;
        let l = if hard_share >= 1.0 { d.mean_all()? } else { mean_of_hardest(&d, hard_share)? };
        total = Some(match total {
            None => l,
            Some(acc) => (acc + l)?,
        });
    }
    let total = total.expect("at least one critical layer");
    total / t.len() as f64
}

/// The mean of the largest `share` of `d`'s values (at least one).
fn mean_of_hardest(d: &Tensor, share: f64) -> Result<Tensor> {
    let mut v = d.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
    let k = ((share * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    let (_, kth, _) = v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let mask = d.ge(*kth)?.to_dtype(d.dtype())?.detach();
    (d * &mask)?.sum_all()? / mask.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?
}

/// log(1 + e^x), stable for large |x|.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Eq 10: L_D = -mean[log D(F_T) + log(1 - D(F_S))] with D = sigmoid(logit).
pub fn discriminator_loss(real_logits: &Tensor, fake_logits: &Tensor) -> Result<Tensor> {
    discriminator_loss_smoothed(real_logits, fake_logits, 0.0)
}

/// Eq 10 with one-sided label smoothing: the real target is 1 − ε, so the
/// real term is −[(1 − ε) log D(F_T) + ε log(1 − D(F_T))]. ε = 0 is Eq 10
/// exactly (the same operations).
pub fn discriminator_loss_smoothed(real_logits: &Tensor, fake_logits: &Tensor, eps: f64) -> Result<Tensor> {
    // -log σ(x) = softplus(-x); -log(1 - σ(x)) = softplus(x).
    let real = softplus(&real_logits.neg()?)?.mean(D::Minus1)?;
    let real = if eps > 0.0 { ((real * (1.0 - eps))? + (softplus(real_logits)?.mean(D::Minus1)? * eps)?)? } else { real };
    real + softplus(fake_logits)?.mean(D::Minus1)?
}

/// Eq 11: L_adv = -mean log D(F_S).
pub fn adversarial_loss(fake_logits: &Tensor) -> Result<Tensor> {
    softplus(&fake_logits.neg()?)?.mean(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn distillation_loss_is_zero_for_equal_directions_and_one_for_orthogonal() {
        let dev = Device::Cpu;
        // Channel-major (1, 2, 1, 2): position 0 = (1, 2), position 1 = (3, 1).
        let a = Tensor::new(&[1f32, 3.0, 2.0, 1.0], &dev).unwrap().reshape((1, 2, 1, 2)).unwrap();
        let b = (&a * 3.0).unwrap();
        let l = distillation_loss(std::slice::from_ref(&a), &[b]).unwrap().to_scalar::<f32>().unwrap();
        assert!(l.abs() < 1e-6);
        // Orthogonal at both positions: (2, -1) and (-1, 3).
        let c = Tensor::new(&[2f32, -1.0, -1.0, 3.0], &dev).unwrap().reshape((1, 2, 1, 2)).unwrap();
        let l = distillation_loss(&[a], &[c]).unwrap().to_scalar::<f32>().unwrap();
        assert!((l - 1.0).abs() < 1e-6);
    }

    /// Four cells with distances 0, 1, 0 and 2 (orthogonal, opposite):
    /// share 1/2 averages the largest two, and only they get gradients.
    #[test]
    fn the_hard_loss_averages_the_hardest_cells_only() -> Result<()> {
        let dev = Device::Cpu;
        // Channel-major (1, 2, 1, 4): teacher (1, 0) everywhere.
        let t = Tensor::new(&[1f32, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0], &dev)?.reshape((1, 2, 1, 4))?;
        let s = candle_core::Var::from_vec(vec![1f32, 0.0, 2.0, -1.0, 0.0, 1.0, 0.0, 0.0], (1, 2, 1, 4), &dev)?;
        let all = distillation_loss(std::slice::from_ref(&t), &[s.as_tensor().clone()])?.to_scalar::<f32>()?;
        assert!((all - 0.75).abs() < 1e-6, "{all}");
        let same = distillation_loss_hardest(std::slice::from_ref(&t), &[s.as_tensor().clone()], 1.0)?.to_scalar::<f32>()?;
        assert_eq!(same, all);
        let hard = distillation_loss_hardest(&[t], &[s.as_tensor().clone()], 0.5)?;
        assert!((hard.to_scalar::<f32>()? - 1.5).abs() < 1e-6);
        let g = hard.backward()?;
        let g: Vec<f32> = g.get(s.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
        // Cells 0 and 2 (distance 0) are not among the hardest: no gradient.
        for c in [0, 2] {
            assert_eq!((g[c], g[4 + c]), (0.0, 0.0), "{g:?}");
        }
        assert!(g[1] != 0.0, "{g:?}");
        Ok(())
    }

    #[test]
    fn zero_feature_vectors_give_finite_gradients() {
        let dev = Device::Cpu;
        let s = candle_core::Var::from_vec(vec![0f32, 0.0, 1.0, 2.0], (1, 2, 1, 2), &dev).unwrap();
        let t = Tensor::new(&[1f32, 1.0, 1.0, 1.0], &dev).unwrap().reshape((1, 2, 1, 2)).unwrap();
        let l = distillation_loss(&[t], &[s.as_tensor().clone()]).unwrap();
        let g = l.backward().unwrap();
        let g: Vec<f32> = g.get(s.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
    }

    #[test]
    fn adversarial_losses_match_the_bce_formulas() {
        let dev = Device::Cpu;
        let real = Tensor::new(&[0.5f32, -1.0], &dev).unwrap();
        let fake = Tensor::new(&[2.0f32, 0.0], &dev).unwrap();
        let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
        let want_d = -((sig(0.5).ln() + sig(-1.0).ln()) / 2.0) - (((1.0 - sig(2.0)).ln() + (1.0 - sig(0.0)).ln()) / 2.0);
        let got = discriminator_loss(&real, &fake).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - want_d).abs() < 1e-5, "{got} vs {want_d}");
        let e = 0.1f32;
        let want_s = -(((1.0 - e) * sig(0.5).ln() + e * (1.0 - sig(0.5)).ln() + (1.0 - e) * sig(-1.0).ln() + e * (1.0 - sig(-1.0)).ln()) / 2.0)
            - (((1.0 - sig(2.0)).ln() + (1.0 - sig(0.0)).ln()) / 2.0);
        let got = discriminator_loss_smoothed(&real, &fake, e as f64).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - want_s).abs() < 1e-5, "{got} vs {want_s}");
        let want_a = -((sig(2.0).ln() + sig(0.0).ln()) / 2.0);
        let got = adversarial_loss(&fake).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - want_a).abs() < 1e-5);
        // Saturated logits stay finite.
        let big = Tensor::new(&[1e4f32], &dev).unwrap();
        assert!(adversarial_loss(&big.neg().unwrap()).unwrap().to_scalar::<f32>().unwrap().is_finite());
    }
}

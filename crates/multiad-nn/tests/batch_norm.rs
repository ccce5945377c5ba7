//! The fused batch norm against candle-nn's (PyTorch's semantics) and
//! against its own composed-from-ops path: outputs, all three gradients and
//! the running statistics.

use candle_core::{Device, ModuleT, Tensor, Var};
use multiad_nn::{BatchNorm, ParamStore};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// A layer whose weight and bias are random (not the initial 1 and 0, which
/// would hide a mix-up of the two).
fn layer(c: usize, seed: u64) -> (ParamStore, BatchNorm) {
    let store = ParamStore::new(seed);
    let bn = BatchNorm::new(c, 1e-5, 0.1, store.var_builder(&Device::Cpu)).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    for (name, var) in store.trainable() {
        let v: Vec<f32> = (0..c).map(|_| r.random_range(0.5..1.5)).collect();
        var.set(&Tensor::from_vec(v, c, &Device::Cpu).unwrap()).unwrap();
        assert!(name.ends_with("weight") || name.ends_with("bias"));
    }
    (store, bn)
}

#[test]
fn fused_training_pass_matches_the_composed_one_with_gradients() {
    let dev = Device::Cpu;
    let mut r = ChaCha8Rng::seed_from_u64(7);
    for (case, shape) in [vec![4, 3, 5, 6], vec![2, 8, 7, 3], vec![16, 5], vec![3, 4, 9]].into_iter().enumerate() {
        let c = shape[1];
        let (store, bn) = layer(c, case as u64);
        let params = store.trainable();
        let n: usize = shape.iter().product();
        // An offset and scale per element so that mean and variance matter.
        let xv: Vec<f32> = (0..n).map(|_| r.random_range(-2.0f32..3.0) * 1.7 + 0.4).collect();
        let x = Var::from_vec(xv, shape.as_slice(), &dev).unwrap();
        let m = Tensor::from_vec((0..n).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), shape.as_slice(), &dev).unwrap();
        let fused = bn.forward_train(x.as_tensor()).unwrap();
        let (composed, _, _) = bn.forward_train_composed(x.as_tensor()).unwrap();
        assert!(max_diff(&fused, &composed) < 1e-5, "case {case}: forward");
        let g1 = (fused * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (composed * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = max_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(gx < 1e-4, "case {case}: input gradient differs by {gx}");
        for (name, var) in &params {
            let d = max_diff(g1.get(var.as_tensor()).unwrap(), g2.get(var.as_tensor()).unwrap());
            assert!(d < 1e-3, "case {case}: gradient of {name} differs by {d}");
        }
    }
}

#[test]
fn fused_relu_matches_batch_norm_then_relu_with_gradients() {
    let dev = Device::Cpu;
    let mut r = ChaCha8Rng::seed_from_u64(8);
    for (case, shape) in [vec![4, 3, 5, 6], vec![8, 6]].into_iter().enumerate() {
        let c = shape[1];
        let (store, bn) = layer(c, 20 + case as u64);
        let n: usize = shape.iter().product();
        let x = Var::from_vec((0..n).map(|_| r.random_range(-2.0f32..3.0)).collect::<Vec<_>>(), shape.as_slice(), &dev).unwrap();
        let m = Tensor::from_vec((0..n).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), shape.as_slice(), &dev).unwrap();
        let fused = bn.forward_relu_t(x.as_tensor(), true).unwrap();
        let (composed, _, _) = bn.forward_train_composed(x.as_tensor()).unwrap();
        let composed = composed.relu().unwrap();
        let zeros = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > n / 20 && zeros < n * 19 / 20, "case {case}: the ReLU should clamp some values, clamped {zeros} of {n}");
        assert!(max_diff(&fused, &composed) < 1e-5, "case {case}: forward");
        let g1 = (fused * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (composed * &m).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap()) < 1e-4, "case {case}: input gradient");
        for (name, var) in store.trainable() {
            let d = max_diff(g1.get(var.as_tensor()).unwrap(), g2.get(var.as_tensor()).unwrap());
            assert!(d < 1e-3, "case {case}: gradient of {name} differs by {d}");
        }
        // Evaluation mode: running statistics, then the ReLU; the input
        // gradient as through the composed ops.
        let e = bn.forward_relu_t(x.as_tensor(), false).unwrap();
        let sh: Vec<usize> = (0..shape.len()).map(|i| if i == 1 { c } else { 1 }).collect();
        let a = (bn.running_var() + 1e-5).unwrap().sqrt().unwrap().recip().unwrap();
        let w = store.trainable().into_iter().find(|(k, _)| k.ends_with("weight")).unwrap().1;
        let b = store.trainable().into_iter().find(|(k, _)| k.ends_with("bias")).unwrap().1;
        let a = (a * w.as_tensor()).unwrap();
        let shift = (b.as_tensor() - (bn.running_mean() * &a).unwrap()).unwrap();
        let reference = x
            .as_tensor()
            .broadcast_mul(&a.reshape(sh.as_slice()).unwrap())
            .unwrap()
            .broadcast_add(&shift.reshape(sh.as_slice()).unwrap())
            .unwrap()
            .relu()
            .unwrap();
        assert!(max_diff(&e, &reference) < 1e-5, "case {case}: eval forward");
        let ge = (e * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (reference * &m).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_diff(ge.get(x.as_tensor()).unwrap(), gr.get(x.as_tensor()).unwrap()) < 1e-5, "case {case}: eval input gradient");
    }
}

#[test]
fn running_statistics_and_eval_pass_match_candle_nn() {
    let dev = Device::Cpu;
    let mut r = ChaCha8Rng::seed_from_u64(9);
    let (_store, ours) = layer(3, 11);
    let (store2, _) = layer(3, 11); // same weight and bias values
    let theirs = candle_nn::batch_norm(3, candle_nn::BatchNormConfig { eps: 1e-5, momentum: 0.1, ..Default::default() }, store2.var_builder(&dev)).unwrap();
    for step in 0..3 {
        let x = Tensor::from_vec((0..4 * 3 * 5 * 5).map(|_| r.random_range(-1.0f32..4.0)).collect::<Vec<_>>(), (4, 3, 5, 5), &dev).unwrap();
        let a = ours.forward_t(&x, true).unwrap();
        let b = theirs.forward_t(&x, true).unwrap();
        assert!(max_diff(&a, &b) < 1e-5, "step {step}: training output");
        assert!(max_diff(ours.running_mean(), theirs.running_mean()) < 1e-6, "step {step}: running mean");
        assert!(max_diff(ours.running_var(), theirs.running_var()) < 1e-5, "step {step}: running variance");
        let a = ours.forward_t(&x, false).unwrap();
        let b = theirs.forward_t(&x, false).unwrap();
        assert!(max_diff(&a, &b) < 1e-5, "step {step}: eval output");
    }
    // The running statistics live in the store (they are saved in checkpoints).
    let saved = _store.tensors();
    let key = saved.keys().find(|k| k.ends_with("running_var")).unwrap();
    assert!(max_diff(&saved[key], ours.running_var()) == 0.0);
    assert!(saved[key].to_vec1::<f32>().unwrap().iter().all(|&v| v != 1.0), "running variance never updated in the store");
}

#[test]
fn a_single_value_per_channel_is_refused() {
    let (_s, bn) = layer(2, 0);
    let x = Tensor::zeros((1, 2, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = bn.forward_train(&x).err().unwrap().to_string();
    assert!(e.contains("more than one value per channel"), "{e}");
}

/// Precise BN: after some training passes (which leave exponential running
/// averages), the recomputed statistics are the plain average of the batch
/// means and of the unbiased batch variances over the batches given, for two
/// layers in a row, whatever the running values were before.
#[test]
fn recomputed_statistics_average_the_batch_statistics() {
    let dev = Device::Cpu;
    let store = ParamStore::new(3);
    let first = BatchNorm::torch_default(3, store.var_builder(&dev).pp("first")).unwrap();
    let second = BatchNorm::torch_default(3, store.var_builder(&dev).pp("second")).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(11);
    let mut batch = |offset: f32| {
        let v: Vec<f32> = (0..4 * 3 * 5).map(|_| r.random_range(-1.0f32..2.0) * 1.5 + offset).collect();
        Tensor::from_vec(v, (4, 3, 5), &dev).unwrap()
    };
    let forward = |x: &Tensor| -> candle_core::Result<Tensor> { second.forward_train(&(first.forward_train(x)? * 2.0)?.exp()?) };
    for k in 0..5 {
        forward(&batch(k as f32)).unwrap();
    }
    let batches: Vec<Tensor> = (0..3).map(|k| batch(-(k as f32))).collect();
    // What each layer sees in training mode: its batch's mean and unbiased variance.
    let stats = |x: &Tensor| {
        let flat = x.transpose(0, 1).unwrap().flatten_from(1).unwrap();
        let n = flat.dim(1).unwrap() as f64;
        let mean = flat.mean(1).unwrap();
        let var = (flat.broadcast_sub(&mean.unsqueeze(1).unwrap()).unwrap().sqr().unwrap().sum(1).unwrap() / (n - 1.0)).unwrap();
        (mean, var)
    };
    let (mut m1, mut v1, mut m2, mut v2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for x in &batches {
        let (m, v) = stats(x);
        m1.push(m);
        v1.push(v);
        let h = (first.forward_train(x).unwrap() * 2.0).unwrap().exp().unwrap();
        let (m, v) = stats(&h);
        m2.push(m);
        v2.push(v);
    }
    let avg = |v: &[Tensor]| Tensor::stack(v, 0).unwrap().mean(0).unwrap();
    let n = multiad_nn::batch_norm::recompute_running_statistics(&store, batches.iter().cloned().map(Ok), |x| forward(x).map(|_| ())).unwrap();
    assert_eq!(n, 3);
    for (bn, mean, var) in [(&first, avg(&m1), avg(&v1)), (&second, avg(&m2), avg(&v2))] {
        let scale = var.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0);
        assert!(max_diff(bn.running_mean(), &mean) < 1e-5 * scale, "{} vs {}", bn.running_mean(), mean);
        assert!(max_diff(bn.running_var(), &var) < 1e-5 * scale, "{} vs {}", bn.running_var(), var);
    }
    assert!(multiad_nn::batch_norm::recompute_running_statistics(&store, std::iter::empty(), |x| forward(x).map(|_| ())).is_err());
}

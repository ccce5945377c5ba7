//! Every op's backward pass against finite differences, and its forward pass
//! against candle's own op where candle has one.

use candle_core::{Device, Tensor, Var};
use multiad_nn::{gaussian_blur, max_pool2d, resize_bilinear};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(shape: (usize, usize, usize, usize), seed: u64) -> Vec<f32> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    // Distinct values so that max pooling has no ties at the finite-difference scale.
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32) * 2.0 - 1.0).collect();
    for i in (1..n).rev() {
        v.swap(i, r.random_range(0..=i));
    }
    v.iter_mut().for_each(|x| *x += r.random_range(-0.1..0.1) / n as f32);
    v
}

/// Compares d(sum(f(x) * w))/dx from autograd with central differences.
fn check(f: impl Fn(&Tensor) -> Tensor, shape: (usize, usize, usize, usize), seed: u64) {
    let dev = Device::Cpu;
    let x0 = random(shape, seed);
    let x = Var::from_vec(x0.clone(), shape, &dev).unwrap();
    let y = f(x.as_tensor());
    let w = Tensor::from_vec(random(y.dims4().unwrap(), seed + 1), y.shape(), &dev).unwrap();
    let loss = (y * &w).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g: Vec<f32> = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let eval = |v: &[f32]| -> f64 {
        let t = Tensor::from_slice(v, shape, &dev).unwrap();
        let y = f(&t);
        (y * &w).unwrap().sum_all().unwrap().to_dtype(candle_core::DType::F64).unwrap().to_scalar::<f64>().unwrap()
    };
    let eps = 1e-2f32 / (x0.len() as f32).sqrt();
    for i in (0..x0.len()).step_by(x0.len().div_ceil(60)) {
        let mut p = x0.clone();
        p[i] += eps;
        let mut m = x0.clone();
        m[i] -= eps;
        let fd = (eval(&p) - eval(&m)) / (2.0 * eps as f64);
        let tol = 2e-2 * (1.0 + fd.abs());
        assert!((fd - g[i] as f64).abs() < tol, "element {i}: autograd {} vs finite difference {fd}", g[i]);
    }
}

#[test]
fn bilinear_resize_gradients() {
    for (shape, (h, w)) in [((2, 3, 4, 5), (8, 10)), ((1, 2, 7, 3), (16, 5)), ((1, 1, 8, 8), (3, 5))] {
        check(|x| resize_bilinear(x, h, w).unwrap(), shape, 1);
    }
}

#[test]
fn gaussian_blur_gradients() {
    check(|x| gaussian_blur(x, 1.5).unwrap(), (1, 2, 9, 11), 2);
    check(|x| gaussian_blur(x, 4.0).unwrap(), (1, 1, 20, 18), 3);
}

#[test]
fn max_pool_gradients_over_strides_and_paddings() {
    for (k, s, p) in [(3, 2, 1), (3, 1, 1), (2, 2, 0), (3, 3, 0), (5, 2, 2)] {
        check(|x| max_pool2d(x, k, s, p).unwrap(), (2, 2, 9, 10), 4 + k as u64);
    }
}

#[test]
fn max_pool_matches_candle_where_candle_has_it() {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(random((2, 3, 12, 10), 9), (2, 3, 12, 10), &dev).unwrap();
    // No padding: candle's op, including its backward (kernel == stride).
    for (k, s) in [(2, 2), (3, 3), (3, 2)] {
        let ours = max_pool2d(&x, k, s, 0).unwrap();
        let theirs = x.max_pool2d_with_stride(k, s).unwrap();
        let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "k {k} s {s}");
    }
    // Padding with non-negative input equals zero padding then candle's pooling.
    let xr = x.relu().unwrap();
    let ours = max_pool2d(&xr, 3, 2, 1).unwrap();
    let theirs = xr.pad_with_zeros(2, 1, 1).unwrap().pad_with_zeros(3, 1, 1).unwrap().max_pool2d_with_stride(3, 2).unwrap();
    assert_eq!(ours.dims(), &[2, 3, 6, 5]);
    let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(d, 0.0);
    // Backward: candle 0.11's own max-pool gradient (kernel == stride) is
    // scaled by 1/(k*k) (it multiplies by the average of the argmax mask);
    // ours is the one that agrees with finite differences above.
    let v = Var::from_tensor(&x).unwrap();
    let g1 = max_pool2d(v.as_tensor(), 2, 2, 0).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = v.as_tensor().max_pool2d(2).unwrap().sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let ours = g1.get(v.as_tensor()).unwrap();
    let theirs = g2.get(v.as_tensor()).unwrap();
    let ratio_gap = (ours - (theirs * 4.0).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    eprintln!("ours vs 4 x candle's max-pool gradient: max difference {ratio_gap}");
}

#[test]
fn bilinear_matches_candle_forward() {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(random((1, 2, 6, 7), 5), (1, 2, 6, 7), &dev).unwrap();
    for (h, w) in [(12, 14), (24, 21), (3, 4)] {
        let ours = resize_bilinear(&x, h, w).unwrap();
        let theirs = x.upsample_bilinear2d(h, w, false).unwrap();
        let d = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-4, "{h}x{w}: {d}");
    }
}

/// The fast-backward convolution against candle's own conv2d (forward and
/// both gradients) over shapes, strides, paddings and dilations. Square
/// inputs only: candle 0.11's own input gradient fails on non-square inputs
/// whose height and width leave different remainders under the stride (it
/// derives the output padding from the height alone); those cases are
/// checked against finite differences below.
#[test]
fn conv2d_matches_candle_forward_and_backward() {
    let dev = Device::Cpu;
    let mut r = ChaCha8Rng::seed_from_u64(21);
    let cases = [
        // (n, cin, h, w, cout, k, padding, stride, dilation)
        (2, 3, 11, 9, 4, 3, 1, 1, 1),
        (2, 3, 12, 12, 5, 3, 1, 2, 1),
        (1, 4, 13, 13, 3, 7, 3, 2, 1),
        (2, 2, 16, 16, 3, 3, 2, 1, 2),
        (1, 3, 17, 15, 2, 3, 4, 2, 4),
        (2, 5, 8, 8, 6, 1, 0, 2, 1),
        (1, 2, 9, 9, 2, 3, 8, 1, 8),
        (1, 3, 10, 10, 2, 3, 0, 3, 1),
        (2, 5, 8, 8, 6, 1, 0, 1, 1),
        // Dilated kernels wider than the input: only some taps read inside
        // it (the centre alone in the first two; every column but only the
        // centre row in the third).
        (2, 3, 8, 8, 4, 3, 8, 1, 8),
        (1, 2, 6, 6, 3, 3, 8, 2, 8),
        (1, 3, 4, 12, 2, 3, 8, 1, 8),
        // Patch matrices larger than one band of output rows: several bands
        // and a shorter last one, with whole images per thread (batch 2)
        // and with the products split across threads (batch 1).
        (2, 256, 40, 30, 3, 3, 1, 1, 1),
        (1, 200, 33, 35, 2, 3, 2, 1, 2),
        (2, 512, 61, 47, 3, 3, 1, 2, 1),
    ];
    for (case, &(n, cin, h, w, cout, k, p, s, d)) in cases.iter().enumerate() {
        let xv: Vec<f32> = (0..n * cin * h * w).map(|_| r.random_range(-1.0..1.0)).collect();
        let wv: Vec<f32> = (0..cout * cin * k * k).map(|_| r.random_range(-1.0..1.0)).collect();
        let x = Var::from_vec(xv, (n, cin, h, w), &dev).unwrap();
        let wt = Var::from_vec(wv, (cout, cin, k, k), &dev).unwrap();
        let ours = multiad_nn::conv2d(x.as_tensor(), wt.as_tensor(), p, s, d).unwrap();
        let theirs = x.as_tensor().conv2d(wt.as_tensor(), p, s, d, 1).unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "case {case}");
        let m = Tensor::from_vec((0..ours.elem_count()).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), ours.shape(), &dev).unwrap();
        let g1 = (ours.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        // Relative to the largest value: deep patch matrices sum thousands of products.
        let diff = |a: &Tensor, b: &Tensor| {
            let scale = 1.0 + b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
        };
        assert!(diff(&ours, &theirs) < 1e-4, "case {case} forward");
        assert!(diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap()) < 1e-3, "case {case} input grad");
        assert!(diff(g1.get(wt.as_tensor()).unwrap(), g2.get(wt.as_tensor()).unwrap()) < 1e-3, "case {case} kernel grad");
    }
}

#[test]
fn conv2d_gradients_against_finite_differences() {
    let dev = Device::Cpu;
    let w = Tensor::from_vec(random((3, 2, 3, 3), 30), (3, 2, 3, 3), &dev).unwrap();
    check(|x| multiad_nn::conv2d(x, &w, 2, 2, 2).unwrap(), (1, 2, 9, 8), 31);
    let w7 = Tensor::from_vec(random((2, 2, 7, 7), 32), (2, 2, 7, 7), &dev).unwrap();
    check(|x| multiad_nn::conv2d(x, &w7, 3, 2, 1).unwrap(), (1, 2, 13, 10), 33);
    check(|x| multiad_nn::conv2d(x, &w, 0, 3, 1).unwrap(), (1, 2, 10, 7), 34);
}

#[test]
fn depthwise_conv2d_matches_candle_grouped_forward() {
    let dev = Device::Cpu;
    let mut r = ChaCha8Rng::seed_from_u64(40);
    // (n, c, h, w, k, padding, stride): Lite0's shapes (3x3 / 5x5, stride 1 / 2,
    // no padding after "SAME" padding), paddings wider than the kernel reach,
    // non-square inputs, and outputs where the last stride step lands outside.
    let cases = [(2, 3, 11, 9, 3, 1, 1), (2, 4, 12, 12, 5, 0, 2), (1, 5, 13, 10, 3, 0, 2), (2, 2, 8, 8, 5, 2, 1), (1, 3, 7, 9, 3, 4, 3), (3, 6, 6, 5, 1, 0, 1)];
    for (case, &(n, c, h, w, k, p, s)) in cases.iter().enumerate() {
        let xv: Vec<f32> = (0..n * c * h * w).map(|_| r.random_range(-1.0..1.0)).collect();
        let wv: Vec<f32> = (0..c * k * k).map(|_| r.random_range(-1.0..1.0)).collect();
        let x = Tensor::from_vec(xv, (n, c, h, w), &dev).unwrap();
        let wt = Tensor::from_vec(wv, (c, 1, k, k), &dev).unwrap();
        let ours = multiad_nn::depthwise_conv2d(&x, &wt, p, s).unwrap();
        let theirs = x.conv2d(&wt, p, s, 1, c).unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "case {case}");
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "case {case}: forward differs by {diff}");
    }
}

#[test]
fn depthwise_conv2d_gradients_against_finite_differences() {
    let dev = Device::Cpu;
    for (seed, (n, c, h, w, k, p, s)) in [(2, 3, 9, 8, 3, 1, 1), (1, 2, 11, 10, 5, 0, 2), (2, 2, 7, 9, 3, 3, 2)].into_iter().enumerate() {
        let seed = 50 + 4 * seed as u64;
        // Input gradient (the kernel a frozen tensor, as in a backbone).
        let wt = Tensor::from_vec(random((c, 1, k, k), seed), (c, 1, k, k), &dev).unwrap();
        check(|x| multiad_nn::depthwise_conv2d(x, &wt, p, s).unwrap(), (n, c, h, w), seed + 1);
        // Kernel gradient (the input a frozen tensor).
        let x = Tensor::from_vec(random((n, c, h, w), seed + 2), (n, c, h, w), &dev).unwrap();
        check(|wt| multiad_nn::depthwise_conv2d(&x, wt, p, s).unwrap(), (c, 1, k, k), seed + 3);
    }
}

#[test]
fn depthwise_conv2d_same_equals_explicit_padding() {
    let dev = Device::Cpu;
    let mut r = ChaCha8Rng::seed_from_u64(60);
    // (n, c, h, w, k, stride): odd and even sizes, so the odd zero lands at
    // the bottom / right in some cases and nowhere in others.
    for (case, &(n, c, h, w, k, s)) in [(2, 3, 9, 8, 3, 2), (1, 4, 12, 11, 5, 2), (2, 2, 7, 7, 5, 1), (1, 3, 10, 10, 3, 1)].iter().enumerate() {
        let xv: Vec<f32> = (0..n * c * h * w).map(|_| r.random_range(-1.0..1.0)).collect();
        let x = Tensor::from_vec(xv, (n, c, h, w), &dev).unwrap();
        let wt = Tensor::from_vec((0..c * k * k).map(|_| r.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), (c, 1, k, k), &dev).unwrap();
        let total = |len: usize| ((len.div_ceil(s) - 1) * s + k).saturating_sub(len);
        let (ph, pw) = (total(h), total(w));
        let padded = x.pad_with_zeros(2, ph / 2, ph - ph / 2).unwrap().pad_with_zeros(3, pw / 2, pw - pw / 2).unwrap();
        let reference = multiad_nn::depthwise_conv2d(&padded, &wt, 0, s).unwrap();
        let same = multiad_nn::depthwise_conv2d_same(&x, &wt, s).unwrap();
        assert_eq!(same.dims(), reference.dims(), "case {case}");
        let diff = (same - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "case {case}: differs by {diff}");
        check(|x| multiad_nn::depthwise_conv2d_same(x, &wt, s).unwrap(), (n, c, h, w), 61 + case as u64);
    }
}

/// The fused cosine distance against the same map from candle's ops, over
/// shapes that are one strip, several strips with a shorter last one, and a
/// position where one feature vector is zero (the clamp).
#[test]
fn cosine_distance_map_matches_candles_ops() {
    use multiad_nn::cosine::{cosine_distance_map, cosine_distance_map_composed};
    let dev = Device::Cpu;
    for (case, shape) in [(1, 3, 4, 5), (2, 7, 40, 33), (3, 2, 1, 1)].into_iter().enumerate() {
        let mut av = random(shape, 70 + case as u64);
        let bv = random(shape, 80 + case as u64);
        // Image 0, position 0: a zero vector in a.
        let hw = shape.2 * shape.3;
        for ch in 0..shape.1 {
            av[ch * hw] = 0.0;
        }
        let a = Var::from_vec(av, shape, &dev).unwrap();
        let b = Var::from_vec(bv, shape, &dev).unwrap();
        let ours = cosine_distance_map(a.as_tensor(), b.as_tensor()).unwrap();
        let theirs = cosine_distance_map_composed(a.as_tensor(), b.as_tensor()).unwrap();
        assert_eq!(ours.dims(), &[shape.0, 1, shape.2, shape.3]);
        let m = Tensor::from_vec(random(ours.dims4().unwrap(), 90), ours.shape(), &dev).unwrap();
        let g1 = (ours.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        // Relative to the largest value: at the zero vector the gradient is
        // about 1e8 (its norm is clamped at 1e-8).
        let diff = |x: &Tensor, y: &Tensor| {
            let scale = 1.0 + y.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() / scale
        };
        assert!(diff(&ours, &theirs) < 1e-5, "case {case} forward {}", diff(&ours, &theirs));
        for (v, name) in [(&a, "a"), (&b, "b")] {
            let d = diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(d < 1e-4, "case {case} gradient of {name}: {d}");
        }
    }
    // A frozen input gets no gradient; the other still does.
    let a = Tensor::from_vec(random((1, 3, 2, 2), 1), (1, 3, 2, 2), &dev).unwrap();
    let b = Var::from_vec(random((1, 3, 2, 2), 2), (1, 3, 2, 2), &dev).unwrap();
    let g = cosine_distance_map(&a, b.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&a).is_none() && g.get(b.as_tensor()).is_some());
    // Shapes must agree.
    assert!(cosine_distance_map(&a, &Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &dev).unwrap()).is_err());
}

#[test]
fn cosine_distance_map_gradients_against_finite_differences() {
    let dev = Device::Cpu;
    let other = Tensor::from_vec(random((2, 5, 3, 4), 100), (2, 5, 3, 4), &dev).unwrap();
    check(|x| multiad_nn::cosine_distance_map(x, &other).unwrap(), (2, 5, 3, 4), 101);
    check(|x| multiad_nn::cosine_distance_map(&other, x).unwrap(), (2, 5, 3, 4), 102);
}

/// The fused per-channel tail against candle's ops, for each activation,
/// with and without scales and a residual; values spread past 0 and 6 so
/// that ReLU6 clips on both sides.
#[test]
fn channel_affine_matches_candles_ops() {
    use multiad_nn::affine::{channel_affine, channel_affine_composed, Activation};
    let dev = Device::Cpu;
    let shape = (2, 3, 5, 7);
    let scale = [4.0f64, -2.5, 0.5];
    let shift = [3.0f64, 1.0, -0.2];
    for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        for (with_scale, with_residual) in [(false, false), (true, false), (false, true), (true, true)] {
            let x = Var::from_vec(random(shape, 110), shape, &dev).unwrap();
            let r = Var::from_vec(random(shape, 111), shape, &dev).unwrap();
            let scale = with_scale.then_some(&scale[..]);
            let residual = with_residual.then_some(r.as_tensor());
            let ours = channel_affine(x.as_tensor(), scale, &shift, residual, act).unwrap();
            let theirs = channel_affine_composed(x.as_tensor(), scale, &shift, residual, act).unwrap();
            let m = Tensor::from_vec(random(shape, 112), shape, &dev).unwrap();
            let g1 = (ours.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
            let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let case = format!("{act:?}, scale {with_scale}, residual {with_residual}");
            assert!(diff(&ours, &theirs) < 1e-6, "{case}: forward {}", diff(&ours, &theirs));
            assert!(diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap()) < 1e-6, "{case}: gradient of x");
            if with_residual {
                assert!(diff(g1.get(r.as_tensor()).unwrap(), g2.get(r.as_tensor()).unwrap()) < 1e-6, "{case}: gradient of r");
            }
            if act == Activation::Relu6 && with_scale {
                let v: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
                assert!(v.contains(&0.0) && v.contains(&6.0), "{case}: the test values do not reach both bounds");
            }
        }
    }
    // A NaN passes through every activation (training stops on it).
    let nan = Tensor::from_vec(vec![f32::NAN, 1.0], (1, 1, 2), &dev).unwrap();
    for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        let y: Vec<f32> = channel_affine(&nan, None, &[0.0], None, act).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(y[0].is_nan(), "{act:?} hid a NaN");
    }
    // Wrong channel counts are errors, not panics.
    let x = Tensor::zeros(shape, candle_core::DType::F32, &dev).unwrap();
    assert!(channel_affine(&x, None, &[0.0; 2], None, Activation::Relu).is_err());
    assert!(channel_affine(&x, Some(&[1.0; 2]), &[0.0; 3], None, Activation::Relu).is_err());
}

#[test]
fn channel_affine_gradients_against_finite_differences() {
    use multiad_nn::affine::{channel_affine, Activation};
    let dev = Device::Cpu;
    let shape = (2, 3, 4, 5);
    let other = Tensor::from_vec(random(shape, 120), shape, &dev).unwrap();
    let (scale, shift) = ([4.0f64, -2.5, 0.5], [3.0f64, 1.0, -0.2]);
    for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        check(|x| channel_affine(x, Some(&scale), &shift, Some(&other), act).unwrap(), shape, 121);
        check(|r| channel_affine(&other, Some(&scale), &shift, Some(r), act).unwrap(), shape, 122);
    }
}

/// The fused squeeze-and-excitation tail against candle's ops, and its
/// gradients (input, scales, residual) against finite differences.
#[test]
fn plane_scale_residual_matches_candles_ops_and_finite_differences() {
    use multiad_nn::affine::{plane_scale_residual, plane_scale_residual_composed, Activation};
    let dev = Device::Cpu;
    let shape = (2, 3, 4, 5);
    let sv: Vec<f32> = random((1, 1, 2, 3), 130).iter().map(|v| 2.0 * v).collect();
    for act in [Activation::Identity, Activation::Relu] {
        let x = Var::from_vec(random(shape, 131), shape, &dev).unwrap();
        let s = Var::from_vec(sv.clone(), (2, 3, 1, 1), &dev).unwrap();
        let r = Var::from_vec(random(shape, 132), shape, &dev).unwrap();
        let ours = plane_scale_residual(x.as_tensor(), s.as_tensor(), r.as_tensor(), act).unwrap();
        let theirs = plane_scale_residual_composed(x.as_tensor(), s.as_tensor(), r.as_tensor(), act).unwrap();
        let m = Tensor::from_vec(random(shape, 133), shape, &dev).unwrap();
        let g1 = (ours.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&ours, &theirs) < 1e-6, "{act:?}: forward");
        for (v, name) in [(&x, "x"), (&s, "s"), (&r, "r")] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert_eq!(a.dims(), b.dims(), "{act:?}: gradient of {name}");
            assert!(diff(a, b) < 1e-5, "{act:?}: gradient of {name} differs by {}", diff(a, b));
        }
        let (s0, r0) = (s.as_tensor().detach(), r.as_tensor().detach());
        check(|x| plane_scale_residual(x, &s0, &r0, act).unwrap(), shape, 134);
        let x0 = x.as_tensor().detach();
        check(|s| plane_scale_residual(&x0, s, &r0, act).unwrap(), (2, 3, 1, 1), 135);
    }
    // One scale per (image, channel) or an error.
    let x = Tensor::zeros(shape, candle_core::DType::F32, &dev).unwrap();
    let bad = Tensor::zeros((2, 2), candle_core::DType::F32, &dev).unwrap();
    assert!(plane_scale_residual(&x, &bad, &x, Activation::Relu).is_err());
}

/// The direct bilinear kernel against the two-matrix form (forward and
/// input gradient), up- and downsampling, odd sizes and a single row.
#[test]
fn bilinear_direct_kernel_matches_the_separable_products() {
    use multiad_nn::resample::{resize_bilinear, resize_bilinear_separable};
    let dev = Device::Cpu;
    for (case, (shape, oh, ow)) in [((2, 3, 8, 8), 16, 16), ((1, 2, 7, 5), 3, 11), ((2, 1, 1, 6), 4, 6), ((1, 4, 16, 12), 5, 5)].into_iter().enumerate() {
        let x = Var::from_vec(random(shape, 140 + case as u64), shape, &dev).unwrap();
        let ours = resize_bilinear(x.as_tensor(), oh, ow).unwrap();
        let theirs = resize_bilinear_separable(x.as_tensor(), oh, ow).unwrap();
        assert_eq!(ours.dims(), theirs.dims(), "case {case}");
        let m = Tensor::from_vec(random(ours.dims4().unwrap(), 150), ours.shape(), &dev).unwrap();
        let g1 = (ours.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (theirs.clone() * &m).unwrap().sum_all().unwrap().backward().unwrap();
        let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff(&ours, &theirs) < 1e-5, "case {case}: forward differs by {}", diff(&ours, &theirs));
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(diff(a, b) < 1e-5, "case {case}: gradient differs by {}", diff(a, b));
    }
}

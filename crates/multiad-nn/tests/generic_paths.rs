//! Every op's generic path (what runs on a GPU: candle's own ops) against
//! its CPU kernel, forward and backward, on the CPU; and, where a CUDA
//! device is present (a `--features cuda` build, `scripts/device_check.sh`),
//! every op on the GPU against its CPU kernel.

use candle_core::{Device, Result, Tensor, Var};
use multiad_nn::device::with_generic_ops;
use multiad_nn::{
    channel_affine, conv2d, conv_transpose2x2, cosine_distance_map, depthwise_conv2d, depthwise_conv2d_same, max_pool2d, resize_bilinear, Activation,
    BatchNorm, ParamStore,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Distinct values (no ties for max pooling to break differently).
fn random(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n).map(|i| (i as f32 / n as f32 - 0.5) * 2.0 + r.random_range(-0.3..0.3f32)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// The largest |a − b| over the largest |a| (at least 1).
fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Where the other side of a comparison runs.
#[derive(Clone)]
enum Side {
    /// The generic paths, on the CPU.
    Generic,
    /// A GPU (the generic paths on candle's CUDA kernels).
    On(Device),
}

/// Runs `f` on fresh variables made from `inputs` with the CPU kernels and
/// on `side`, and compares the outputs and the gradients of Σ y · r (r
/// random) with respect to every input, within 1e-4 relative.
fn compare(side: &Side, what: &str, inputs: &[&[usize]], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let values: Vec<Tensor> = inputs.iter().enumerate().map(|(i, d)| random(d, 10 + i as u64)).collect();
    let run = |dev: &Device| -> (Tensor, Vec<Tensor>) {
        let vars: Vec<Var> = values.iter().map(|t| Var::from_tensor(&t.to_device(dev).unwrap()).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&ts).unwrap_or_else(|e| panic!("{what} on {dev:?}: {e}"));
        let r = random(y.dims(), 99).to_device(dev).unwrap();
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g = vars.iter().map(|v| grads.get(v.as_tensor()).cloned().unwrap_or_else(|| v.as_tensor().zeros_like().unwrap()));
        let host = |t: Tensor| t.to_device(&Device::Cpu).unwrap();
        (host(y), g.map(host).collect())
    };
    let (y_cpu, g_cpu) = run(&Device::Cpu);
    let (y_other, g_other) = match side {
        Side::Generic => with_generic_ops(|| run(&Device::Cpu)),
        Side::On(dev) => run(dev),
    };
    let worst = g_cpu.iter().zip(&g_other).map(|(a, b)| rel_diff(a, b)).fold(rel_diff(&y_cpu, &y_other), f32::max);
    println!("{what}: worst relative difference {worst:.2e}");
    assert!(worst < 1e-4, "{what}: differs from the CPU kernel by {worst:e} (relative)");
}

/// Every op, through [`compare`] against `side`.
fn every_op(side: &Side) {
    convolutions(side);
    depthwise_convolutions(side);
    max_pooling(side);
    channel_tails(side);
    batch_norm(side);
    maps(side);
}

#[test]
fn generic_paths_match_the_cpu_kernels() {
    every_op(&Side::Generic);
}

#[test]
fn cuda_matches_the_cpu_kernels() {
    if let Some(gpu) = multiad_nn::device::gpu_for_tests() {
        every_op(&Side::On(gpu));
    }
}

fn convolutions(side: &Side) {
    for (p, s, d) in [(1, 1, 1), (0, 2, 1), (2, 1, 2), (3, 2, 1)] {
        compare(side, &format!("conv2d p{p} s{s} d{d}"), &[&[2, 3, 11, 10], &[4, 3, 3, 3]], |t| conv2d(&t[0], &t[1], p, s, d));
    }
    // Equal unread remainders (1 row and 1 column): candle's op as it is.
    compare(side, "conv2d p0 s2 d1 10x10", &[&[2, 3, 10, 10], &[4, 3, 3, 3]], |t| conv2d(&t[0], &t[1], 0, 2, 1));
    compare(side, "conv_transpose2x2", &[&[2, 3, 5, 4], &[3, 4, 2, 2]], |t| conv_transpose2x2(&t[0], &t[1]));
}

fn depthwise_convolutions(side: &Side) {
    for (k, p, s) in [(3, 1, 1), (5, 2, 2), (3, 0, 2)] {
        compare(side, &format!("depthwise k{k} p{p} s{s}"), &[&[2, 4, 9, 12], &[4, 1, k, k]], |t| depthwise_conv2d(&t[0], &t[1], p, s));
    }
    // Odd and even sides: "SAME" puts the odd padding row after.
    for (k, s, h, w) in [(3, 1, 8, 7), (3, 2, 9, 8), (5, 2, 8, 11), (5, 1, 6, 6)] {
        compare(side, &format!("depthwise SAME k{k} s{s} {h}x{w}"), &[&[2, 3, h, w], &[3, 1, k, k]], |t| depthwise_conv2d_same(&t[0], &t[1], s));
    }
}

fn max_pooling(side: &Side) {
    for (k, s, p, h, w) in [(3, 2, 1, 12, 11), (2, 2, 0, 8, 8), (3, 1, 1, 5, 7), (3, 2, 0, 9, 9)] {
        compare(side, &format!("max_pool2d k{k} s{s} p{p} {h}x{w}"), &[&[2, 3, h, w]], |t| max_pool2d(&t[0], k, s, p));
    }
}

fn channel_tails(side: &Side) {
    let scale = [0.5f64, -1.5, 2.0];
    let shift = [0.1f64, 0.0, -0.3];
    for act in [Activation::Identity, Activation::Relu, Activation::Relu6] {
        compare(side, &format!("channel_affine {act:?}"), &[&[2, 3, 4, 5]], |t| channel_affine(&t[0], Some(&scale), &shift, None, act));
        compare(side, &format!("channel_affine + residual {act:?}"), &[&[2, 3, 4, 5], &[2, 3, 4, 5]], |t| {
            channel_affine(&t[0], Some(&scale), &shift, Some(&t[1]), act)
        });
        compare(side, &format!("plane_scale_residual {act:?}"), &[&[2, 3, 4, 5], &[2, 3], &[2, 3, 4, 5]], |t| {
            multiad_nn::affine::plane_scale_residual(&t[0], &t[1], &t[2], act)
        });
    }
}

/// The normalised output, its gradients and the running statistics.
fn batch_norm(side: &Side) {
    for relu in [false, true] {
        compare(side, &format!("batch norm train relu={relu}"), &[&[3, 4, 5, 6]], |t| {
            let store = ParamStore::new(3);
            let bn = BatchNorm::new(4, 1e-5, 0.1, store.var_builder(t[0].device()))?;
            let y = if relu { bn.forward_relu_t(&t[0], true)? } else { bn.forward_train(&t[0])? };
            // The running statistics ride along as extra outputs.
            let stats = Tensor::cat(&[bn.running_mean(), bn.running_var()], 0)?.reshape((1, 8, 1, 1))?.broadcast_as((3, 8, 5, 6))?;
            Tensor::cat(&[&y, &stats], 1)
        });
    }
}

fn maps(side: &Side) {
    compare(side, "cosine_distance_map", &[&[2, 5, 6, 7], &[2, 5, 6, 7]], |t| cosine_distance_map(&t[0], &t[1]));
    for (h, w) in [(16, 20), (3, 5)] {
        compare(side, &format!("resize_bilinear to {h}x{w}"), &[&[2, 3, 8, 10]], |t| resize_bilinear(&t[0], h, w));
    }
}

#[test]
fn the_switch_is_per_thread_and_restored() {
    let x = random(&[1, 1, 4, 4], 1);
    assert!(multiad_nn::device::cpu_kernels_apply(&[&x]));
    with_generic_ops(|| {
        assert!(!multiad_nn::device::cpu_kernels_apply(&[&x]));
        let other = std::thread::spawn({
            let x = x.clone();
            move || multiad_nn::device::cpu_kernels_apply(&[&x])
        });
        assert!(other.join().unwrap(), "another thread keeps its CPU kernels");
    });
    assert!(multiad_nn::device::cpu_kernels_apply(&[&x]));
}

//! MKD at the smoke scale: separates synthetic defects; saliency maps have
//! the input's size; the score's gradient with respect to the input matches
//! finite differences; guided backpropagation changes the map, not the score.

use candle_core::{Device, Tensor};
use multiad_detector::testing::{method_preset, SmokeRun};
use multiad_detector::Detector;
use multiad_mkd::{Localization, Mkd, MkdConfig};

/// Saliency maps have the input's size (checked by the smoke test); vanilla
/// gradients give the same score as guided backpropagation and another map.
fn guided_and_vanilla_maps_differ(smoke: SmokeRun<MkdConfig, Mkd>) {
    let (cfg, det, run) = (smoke.cfg, smoke.det, smoke.run);
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let (maps, scores) = det.predict(&x).unwrap();
    let mut vanilla = Mkd::new(&MkdConfig { localization: Localization::Gradients, ..cfg.clone() }, &Device::Cpu).unwrap();
    vanilla.load(&run).unwrap();
    let (vm, vs) = vanilla.predict(&x).unwrap();
    assert_eq!(vs, scores);
    let diff = (vm - &maps).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff > 1e-3, "guided and vanilla maps are identical");
}

#[test]
fn the_score_gradient_matches_finite_differences() {
    // Untrained is enough: the gradient path is the same. The input is seeded
    // so that a failure reproduces.
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut cfg = MkdConfig { lambda: 0.5, ..method_preset::<MkdConfig>("smoke") };
    cfg.common.image_size = 32;
    let det = Mkd::new(&cfg, &Device::Cpu).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
    let normal = rand_distr::Normal::new(0f32, 0.5).unwrap();
    let base: Vec<f32> = (0..3 * 32 * 32).map(|_| normal.sample(&mut rng)).collect();
    let score = |v: &[f32]| {
        let t = Tensor::from_slice(v, (1, 3, 32, 32), &Device::Cpu).unwrap();
        det.scores_and_gradient(&t, false).unwrap().0[0]
    };
    let x = Tensor::from_slice(&base, (1, 3, 32, 32), &Device::Cpu).unwrap();
    let (_, g) = det.scores_and_gradient(&x, false).unwrap();
    let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
    let moved = |dir: &[f32], d: f32| base.iter().zip(dir).map(|(b, v)| b + d * v).collect::<Vec<_>>();

    // 1. Along the gradient's own direction the slope must be |g|. A step
    // spread over all pixels averages out the ReLU and max-pool kinks that
    // single-pixel differences can straddle.
    let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(norm > 0.0, "zero gradient");
    let unit: Vec<f32> = g.iter().map(|v| v / norm).collect();
    let eps = 1e-2f32;
    let slope = (score(&moved(&unit, eps)) - score(&moved(&unit, -eps))) / (2.0 * eps);
    assert!((slope - norm).abs() <= 0.03 * norm, "slope along the gradient {slope} vs |g| {norm}");

    // 2. Single pixels with the largest gradients. Their differences carry
    // the f32 rounding of the whole score (a few percent of these slopes, as
    // measured), so the bound is looser, and one may sit on a kink within eps.
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    let mut report = Vec::new();
    for &i in order.iter().take(6) {
        let mut e = vec![0f32; g.len()];
        e[i] = 1.0;
        let fd = (score(&moved(&e, eps)) - score(&moved(&e, -eps))) / (2.0 * eps);
        report.push((i, fd, g[i], (fd - g[i]).abs() <= 0.1 * g[i].abs() + 1e-4));
    }
    let matched = report.iter().filter(|r| r.3).count();
    assert!(matched >= 5, "pixels (index, finite difference, gradient, ok): {report:?}");
}

multiad_detector::method_tests! {
    build: Mkd::new, config: MkdConfig, backbone: "random_vgg16",
    smoke_checks: guided_and_vanilla_maps_differ,
    bad_keys: [("score_layers: [7]\n", "score_layers"), ("lambda: -1\n", "lambda"), ("localization: lime\n", "lime"), ("cloner_convs: [2, 0]\n", "cloner_convs")],
    resume_epochs: 3,
}

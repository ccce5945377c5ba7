//! MKD at the smoke scale: separates synthetic defects; saliency maps have
//! the input's size; the score's gradient with respect to the input matches
//! finite differences; guided backpropagation changes the map, not the score.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use multiad_detector::testing::fit_and_test_synthetic;
use multiad_detector::Detector;
use multiad_mkd::{Localization, Mkd, MkdConfig};

fn preset(name: &str) -> MkdConfig {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../experiments/methods/mkd/{name}.yaml"));
    MkdConfig::from_yaml_str(&std::fs::read_to_string(&p).unwrap(), &p).unwrap()
}

#[test]
fn smoke_preset_separates_synthetic_defects_with_input_sized_saliency_maps() {
    let t = tempfile::tempdir().unwrap();
    let cfg = preset("smoke");
    let mut det = Mkd::new(&cfg, &Device::Cpu).unwrap();
    let (run, m) = fit_and_test_synthetic(&cfg, &mut det, t.path()).unwrap();
    eprintln!("MKD smoke: {m:?}");
    assert!(m.image_auroc > 0.85, "image AUROC {}", m.image_auroc);
    assert!(m.pixel_auroc.unwrap() > 0.8, "pixel AUROC {:?}", m.pixel_auroc);
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let (maps, scores) = det.predict(&x).unwrap();
    assert_eq!(maps.dims(), &[2, 64, 64]);
    // Reloaded, the same scores; vanilla gradients give the same score and another map.
    let mut back = Mkd::new(&cfg, &Device::Cpu).unwrap();
    back.load(&run).unwrap();
    assert_eq!(back.predict(&x).unwrap().1, scores);
    let mut vanilla = Mkd::new(&MkdConfig { localization: Localization::Gradients, ..cfg.clone() }, &Device::Cpu).unwrap();
    vanilla.load(&run).unwrap();
    let (vm, vs) = vanilla.predict(&x).unwrap();
    assert_eq!(vs, scores);
    let diff = (vm - &maps).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff > 1e-3, "guided and vanilla maps are identical");
}

#[test]
fn the_score_gradient_matches_finite_differences() {
    // Untrained is enough: the gradient path is the same.
    let cfg = MkdConfig { image_size: 32, lambda: 0.5, ..preset("smoke") };
    let det = Mkd::new(&cfg, &Device::Cpu).unwrap();
    let x = (Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &Device::Cpu).unwrap() * 0.5).unwrap();
    let (_, g) = det.scores_and_gradient(&x, false).unwrap();
    let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
    let base: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-2f32;
    // The pixels with the largest gradients (small ones drown in f32 rounding).
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
    for &i in order.iter().take(5) {
        let at = |d: f32| {
            let mut v = base.clone();
            v[i] += d;
            let t = Tensor::from_vec(v, (1, 3, 32, 32), &Device::Cpu).unwrap();
            det.scores_and_gradient(&t, false).unwrap().0[0]
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!((fd - g[i]).abs() <= 0.05 * g[i].abs() + 1e-4, "pixel {i}: finite difference {fd} vs gradient {}", g[i]);
    }
}

#[test]
fn bad_configs_name_the_key() {
    let p = Path::new("mkd.yaml");
    let base = "method: mkd\nbackbone: {kind: random_vgg16}\n";
    for (extra, key) in [("score_layers: [7]\n", "score_layers"), ("lambda: -1\n", "lambda"), ("localization: lime\n", "lime"), ("cloner_convs: [2, 0]\n", "cloner_convs")] {
        let e = MkdConfig::from_yaml_str(&format!("{base}{extra}"), p).err().unwrap().to_string();
        assert!(e.contains("mkd.yaml") && e.contains(key), "{extra:?}: {e}");
    }
}

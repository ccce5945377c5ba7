//! PatchCore at the smoke scale: separates synthetic defects; a saved bank
//! reloads to the same maps; the reweighted score; the feature pipeline's
//! pieces against values worked out by hand; bad configs are named.

use candle_core::{Device, Tensor};
use multiad_backbones::patch_features::{adaptive_avg_pool1d, unfold};
use multiad_detector::testing::SmokeRun;
use multiad_detector::Detector;
use multiad_patchcore::{PatchCore, PatchCoreConfig};

fn the_bank_and_the_reweighted_score(smoke: SmokeRun<PatchCoreConfig, PatchCore>) {
    let (cfg, det, run) = (smoke.cfg, smoke.det, smoke.run);
    // 48 images x 8x8 patches, 10% kept.
    assert_eq!(det.bank_len(), (48.0f64 * 64.0 * 0.1).round() as usize);
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &Device::Cpu).unwrap();
    let (a, sa) = det.predict(&x).unwrap();

    // Eq. 7 only scales the maximum down (weights in (0, 1)); maps unchanged.
    let mut rw = PatchCore::new(&PatchCoreConfig { reweight: true, ..cfg.clone() }, &Device::Cpu).unwrap();
    rw.load(&run).unwrap();
    let (c, sc) = rw.predict(&x).unwrap();
    for (r, p) in sc.iter().zip(&sa) {
        assert!(*r > 0.0 && r < p, "reweighted {r} vs plain {p}");
    }
    assert_eq!(c.flatten_all().unwrap().to_vec1::<f32>().unwrap(), a.flatten_all().unwrap().to_vec1::<f32>().unwrap());

    // A bank of the wrong width names the file and the tensor.
    let other = PatchCoreConfig { target_dim: 64, ..cfg.clone() };
    let e = PatchCore::new(&other, &Device::Cpu).unwrap().load(&run).err().unwrap().to_string();
    assert!(e.contains("model.safetensors") && e.contains("memory_bank"), "{e}");
}

#[test]
fn adaptive_pooling_matches_pytorch_bins() {
    // torch.nn.functional.adaptive_avg_pool1d(torch.arange(5.).view(1,1,5), 3)
    // -> bins [0,2), [1,4), [3,5) -> [0.5, 2.0, 3.5]
    let mut out = [0f32; 3];
    adaptive_avg_pool1d(&[0.0, 1.0, 2.0, 3.0, 4.0], &mut out);
    assert_eq!(out, [0.5, 2.0, 3.5]);
    // Exact division averages disjoint runs.
    let mut out = [0f32; 2];
    adaptive_avg_pool1d(&[1.0, 3.0, 5.0, 7.0], &mut out);
    assert_eq!(out, [2.0, 6.0]);
}

#[test]
fn unfold_orders_like_torch_unfold() {
    // One channel 2x2 map [[1, 2], [3, 4]], 3x3 neighbourhoods, zero padding.
    let x = Tensor::new(&[[[[1f32, 2.0], [3.0, 4.0]]]], &Device::Cpu).unwrap();
    let u = unfold(&x, 3).unwrap();
    assert_eq!(u.dims(), &[1, 9, 2, 2]);
    // The neighbourhood of the top-left pixel, row by row.
    let top_left: Vec<f32> = u.narrow(2, 0, 1).unwrap().narrow(3, 0, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(top_left, vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
}

multiad_detector::method_tests! {
    build: PatchCore::new, config: PatchCoreConfig, backbone: "random_resnet18",
    smoke_checks: the_bank_and_the_reweighted_score,
    bad_keys: [("coreset_ratio: 0\n", "coreset_ratio"), ("patch_size: 2\n", "patch_size"), ("layers: []\n", "layers"), ("k: 1\n", "`k`")],
    refused_by_build: [("layers: [1, 7]\n", "level 7")],
}

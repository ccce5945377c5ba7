//! The feature cache keeps each image's rows in storage of their own size:
//! a cached row must not keep its whole batch alive (the 9.9 GiB training
//! peak of Multi-AD's `cpu` preset on magnetic tile came from exactly that).

use candle_core::{Device, Tensor};
use multiad_detector::epochs::FeatureCache;

fn batch_features(x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
    // Two "layers" of different shapes, computed from the batch.
    Ok(vec![(x * 2.0)?, x.avg_pool2d(2)?])
}

#[test]
fn cached_rows_own_only_their_bytes_and_come_back_unchanged() {
    let dev = Device::Cpu;
    let images = Tensor::randn(0f32, 1.0, (8, 3, 16, 16), &dev).unwrap();
    let mut cache = FeatureCache::new(64);
    let first = cache.get(&images, &[10, 11, 12, 13, 14, 15, 16, 17], batch_features).unwrap();
    assert_eq!(cache.len(), 8);
    let per_image = (3 * 16 * 16 + 3 * 8 * 8) * 4;
    assert_eq!(cache.resident_bytes(), 8 * per_image, "each cached row must hold only its own data");

    // Served from the cache, in the order asked for, equal to a fresh computation.
    let order = [13usize, 10, 17];
    let again = cache.get(&images, &order, |_| panic!("every image is cached; nothing to compute")).unwrap();
    for (l, (a, f)) in again.iter().zip(&first).enumerate() {
        for (k, &i) in order.iter().enumerate() {
            let want = f.narrow(0, i - 10, 1).unwrap();
            let got = a.narrow(0, k, 1).unwrap();
            let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(diff, 0.0, "layer {l}, image {i}");
        }
    }
}

#[test]
fn budget_limits_what_is_kept() {
    let dev = Device::Cpu;
    let images = Tensor::randn(0f32, 1.0, (4, 64, 32, 32), &dev).unwrap();
    // 1 MiB holds 3 images of 320 KiB (64x32x32 + 64x16x16 floats) each.
    let mut cache = FeatureCache::new(1);
    cache.get(&images, &[0, 1, 2, 3], batch_features).unwrap();
    assert_eq!(cache.len(), 3);
    assert!(cache.resident_bytes() <= 1 << 20);
    // Image 3 is not cached, so a batch with it is computed again.
    let mut computed = false;
    cache
        .get(&images, &[0, 3], |x| {
            computed = true;
            batch_features(x)
        })
        .unwrap();
    assert!(computed);
}

//! Metrics per defect type: each type is scored against the normal images
//! only, and the pixel shares add up to the whole test set's defect pixels.

use multiad_detector::{metrics_by_defect_type, ScoredImage};

/// AUROC by counting pairs (ties count half): the definition, for checking.
fn pairwise_auroc(neg: &[f32], pos: &[f32]) -> f64 {
    let mut wins = 0.0;
    for &p in pos {
        for &n in neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

fn mask_of(pixels: &[usize]) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    for &i in pixels {
        m[i] = 1;
    }
    m
}

#[test]
fn each_type_is_scored_against_the_normal_images_only() {
    // 4x4 maps. Normal maps: values in [0, 0.3], deterministic.
    let normal_maps: Vec<Vec<f32>> = (0..3).map(|k| (0..16).map(|i| ((i * 7 + k * 5) % 16) as f32 / 50.0).collect()).collect();
    let zero = vec![0u8; 16];
    // Type "a": perfectly separated (masked pixels 1.0, image scores above every normal).
    let a_masks = [mask_of(&[0, 1]), mask_of(&[5, 6])];
    let a_maps: Vec<Vec<f32>> = a_masks.iter().map(|m| m.iter().map(|&v| if v != 0 { 1.0 } else { 0.0 }).collect()).collect();
    // Type "b": worse than chance, masked pixels low, 6 masked pixels each.
    let b_masks = [mask_of(&[0, 1, 2, 3, 4, 5]), mask_of(&[10, 11, 12, 13, 14, 15])];
    let b_maps: Vec<Vec<f32>> = b_masks
        .iter()
        .enumerate()
        .map(|(k, mask)| (0..16).map(|i| if mask[i] != 0 { 0.01 * k as f32 } else { ((i * 3 + k) % 16) as f32 / 40.0 }).collect())
        .collect();
    let mut images = Vec::new();
    for (k, m) in normal_maps.iter().enumerate() {
        images.push(ScoredImage { defect_type: "good", anomalous: false, score: 0.1 * (k + 1) as f32, map: m, mask: &zero });
    }
    for (k, (m, mask)) in a_maps.iter().zip(&a_masks).enumerate() {
        images.push(ScoredImage { defect_type: "a", anomalous: true, score: 0.9 - 0.1 * k as f32, map: m, mask });
    }
    for (k, (m, mask)) in b_maps.iter().zip(&b_masks).enumerate() {
        images.push(ScoredImage { defect_type: "b", anomalous: true, score: 0.15 - 0.1 * k as f32, map: m, mask });
    }
    // Type "c": no mask, so image metrics only.
    images.push(ScoredImage { defect_type: "c", anomalous: true, score: 0.25, map: &[], mask: &[] });

    let by = metrics_by_defect_type(&images, 4, 4).unwrap();
    assert_eq!(by.keys().collect::<Vec<_>>(), ["a", "b", "c"]);

    let a = &by["a"];
    assert_eq!(a.images, 2);
    assert_eq!(a.image_auroc, 1.0);
    assert_eq!(a.pixel_auroc, Some(1.0));
    assert!(a.aupro.unwrap() > 0.99, "aupro {:?}", a.aupro);
    assert_eq!(a.defect_pixel_share, Some(4.0 / 16.0));

    // "b" against the normals only: the definition, computed by brute force.
    let b = &by["b"];
    let normal_scores = [0.1f32, 0.2, 0.3];
    assert!((b.image_auroc - pairwise_auroc(&normal_scores, &[0.15, 0.05])).abs() < 1e-12);
    let mut neg: Vec<f32> = normal_maps.concat();
    let mut pos = Vec::new();
    for (m, mask) in b_maps.iter().zip(&b_masks) {
        for (&v, &l) in m.iter().zip(mask) {
            if l != 0 {
                pos.push(v)
            } else {
                neg.push(v)
            }
        }
    }
    assert!((b.pixel_auroc.unwrap() - pairwise_auroc(&neg, &pos)).abs() < 1e-12);
    assert!(b.pixel_auroc.unwrap() < 0.5);
    assert_eq!(b.defect_pixel_share, Some(12.0 / 16.0));

    let c = &by["c"];
    assert_eq!(c.images, 1);
    assert!((c.image_auroc - pairwise_auroc(&normal_scores, &[0.25])).abs() < 1e-12);
    assert_eq!((c.pixel_auroc, c.aupro, c.defect_pixel_share), (None, None, None));
}

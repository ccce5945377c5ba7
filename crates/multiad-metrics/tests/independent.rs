//! The fast metrics checked against slow, independent computations: pairwise
//! counting for AUROC, and thresholding at every distinct score for AUPRO, on
//! random data with many ties; plus values computed with scikit-learn / SciPy
//! (see `scripts/reference_metrics.py`).

use multiad_metrics::{aupro, label_components, AnomalyMap, BinaryScores};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn brute_auroc(s: &[f32], y: &[bool]) -> f64 {
    let mut num = 0.0;
    let mut pairs = 0.0;
    for (i, &yi) in y.iter().enumerate() {
        if !yi {
            continue;
        }
        for (j, &yj) in y.iter().enumerate() {
            if yj {
                continue;
            }
            pairs += 1.0;
            if s[i] > s[j] {
                num += 1.0;
            } else if s[i] == s[j] {
                num += 0.5;
            }
        }
    }
    num / pairs
}

#[test]
fn auroc_equals_pairwise_count_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for trial in 0..20 {
        let n = 50 + trial * 37;
        // Quantised scores force many ties; positives shifted up a little.
        let y: Vec<bool> = (0..n).map(|_| rng.random_bool(0.3)).collect();
        let s: Vec<f32> = y.iter().map(|&p| ((rng.random::<f32>() + if p { 0.3 } else { 0.0 }) * 10.0).round() / 10.0).collect();
        if !y.iter().any(|&v| v) || y.iter().all(|&v| v) {
            continue;
        }
        let mut b = BinaryScores::new();
        for (&si, &yi) in s.iter().zip(&y) {
            b.push(si, yi).unwrap();
        }
        let fast = b.auroc().unwrap();
        let slow = brute_auroc(&s, &y);
        assert!((fast - slow).abs() < 1e-12, "trial {trial}: {fast} vs {slow}");
    }
}

/// Direct evaluation: threshold at each distinct score, measure FPR and the
/// per-region overlap, integrate the resulting curve.
fn brute_aupro(maps: &[(Vec<f32>, Vec<u8>, usize, usize)], limit: f64) -> f64 {
    let mut regions: Vec<Vec<usize>> = Vec::new(); // (global pixel index) per region
    let mut normal: Vec<usize> = Vec::new();
    let mut all: Vec<f32> = Vec::new();
    for (s, m, w, h) in maps {
        let c = label_components(m, *w, *h);
        let base = all.len();
        let first = regions.len();
        regions.resize(first + c.count(), Vec::new());
        for (i, &l) in c.labels.iter().enumerate() {
            if l == 0 {
                normal.push(base + i);
            } else {
                regions[first + l as usize - 1].push(base + i);
            }
        }
        all.extend_from_slice(s);
    }
    let mut ts: Vec<f32> = all.clone();
    ts.sort_by(|a, b| b.partial_cmp(a).unwrap());
    ts.dedup();
    let mut xs = vec![0.0];
    let mut ys = vec![0.0];
    for &t in &ts {
        let fpr = normal.iter().filter(|&&i| all[i] >= t).count() as f64 / normal.len() as f64;
        let pro = regions.iter().map(|r| r.iter().filter(|&&i| all[i] >= t).count() as f64 / r.len() as f64).sum::<f64>() / regions.len() as f64;
        xs.push(fpr);
        ys.push(pro);
    }
    xs.push(1.0);
    ys.push(1.0);
    let mut area = 0.0;
    for k in 1..xs.len() {
        if xs[k] <= limit {
            area += 0.5 * (ys[k] + ys[k - 1]) * (xs[k] - xs[k - 1]);
        } else {
            let y = ys[k - 1] + (ys[k] - ys[k - 1]) * (limit - xs[k - 1]) / (xs[k] - xs[k - 1]);
            area += 0.5 * (y + ys[k - 1]) * (limit - xs[k - 1]);
            break;
        }
    }
    area / limit
}

fn random_maps(rng: &mut ChaCha8Rng, n: usize, w: usize, h: usize) -> Vec<(Vec<f32>, Vec<u8>, usize, usize)> {
    (0..n)
        .map(|k| {
            let mut m = vec![0u8; w * h];
            if k % 3 != 0 {
                // One or two rectangles per anomalous image, sometimes touching.
                for _ in 0..rng.random_range(1..=2) {
                    let (x0, y0) = (rng.random_range(0..w - 3), rng.random_range(0..h - 3));
                    let (rw, rh) = (rng.random_range(1..4), rng.random_range(1..4));
                    for y in y0..y0 + rh {
                        for x in x0..x0 + rw {
                            m[y * w + x] = 1;
                        }
                    }
                }
            }
            let s = m.iter().map(|&v| ((rng.random::<f32>() + 0.4 * v as f32) * 20.0).round() / 20.0).collect();
            (s, m, w, h)
        })
        .collect()
}

#[test]
fn aupro_equals_direct_thresholding() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for trial in 0..8 {
        let maps = random_maps(&mut rng, 3 + trial, 12, 9);
        let views: Vec<AnomalyMap> = maps.iter().map(|(s, m, w, h)| AnomalyMap { scores: s, mask: m, width: *w, height: *h }).collect();
        for limit in [0.3, 0.05, 1.0] {
            let fast = aupro(&views, limit).unwrap();
            let slow = brute_aupro(&maps, limit);
            assert!((fast - slow).abs() < 1e-9, "trial {trial} limit {limit}: {fast} vs {slow}");
        }
    }
}

#[test]
fn aupro_of_a_perfect_map_is_one_and_of_an_inverted_map_is_zero() {
    let mask: Vec<u8> = (0..100).map(|i| u8::from((i % 10) < 3 && i / 10 < 4)).collect();
    let good: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
    let bad: Vec<f32> = mask.iter().map(|&m| 1.0 - m as f32).collect();
    let v = |s: &[f32]| aupro(&[AnomalyMap { scores: s, mask: &mask, width: 10, height: 10 }], 0.3).unwrap();
    assert!((v(&good) - 1.0).abs() < 1e-12);
    assert!(v(&bad).abs() < 1e-12);
}

/// Values printed by `python3 scripts/reference_metrics.py` (scikit-learn
/// `roc_auc_score`, and the MVTec AD reference AUPRO written with SciPy's
/// `ndimage.label`) for the fixed inputs below.
#[test]
fn matches_scikit_learn_and_mvtec_reference_values() {
    let scores: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 / 8.0).floor() / 8.0).collect();
    let mask: Vec<u8> = (0..64).map(|i| u8::from((i * 37 % 64) > 40 || (i % 8 == 0 && i < 24))).collect();
    let mut b = BinaryScores::new();
    b.push_map(&scores, &mask).unwrap();
    let auroc = b.auroc().unwrap();
    let pro = aupro(&[AnomalyMap { scores: &scores, mask: &mask, width: 8, height: 8 }], 0.3).unwrap();
    assert!((auroc - SKLEARN_AUROC).abs() < 1e-12, "auroc {auroc}");
    assert!((pro - REFERENCE_AUPRO).abs() < 1e-9, "aupro {pro}");
}

const SKLEARN_AUROC: f64 = 0.945344129554656;
const REFERENCE_AUPRO: f64 = 0.9333333333333335;

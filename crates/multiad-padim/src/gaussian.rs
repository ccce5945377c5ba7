//! Per-position multivariate Gaussians: covariance + ε·I, inverted through
//! a Cholesky factorisation in f64 (candle has no linear algebra).

use rayon::prelude::*;

/// The inverse of a symmetric positive-definite `d x d` matrix (row-major),
/// or `None` when it is not positive definite.
pub fn spd_inverse(a: &[f64], d: usize) -> Option<Vec<f64>> {
    // A = L Lᵀ (lower triangular L, row-major).
    let mut l = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum();
            let v = a[i * d + j] - dot;
            if i == j {
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * d + i] = v.sqrt();
            } else {
                l[i * d + j] = v / l[j * d + j];
            }
        }
    }
    // M = L⁻¹ (lower triangular), by forward substitution column by column.
    let mut m = vec![0f64; d * d];
    for c in 0..d {
        m[c * d + c] = 1.0 / l[c * d + c];
        for i in c + 1..d {
            let s: f64 = (c..i).map(|k| l[i * d + k] * m[k * d + c]).sum();
            m[i * d + c] = -s / l[i * d + i];
        }
    }
    // A⁻¹ = Mᵀ M: entry (i, j) = Σ_k M[k][i] M[k][j], k >= max(i, j).
    let mut inv = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (i..d).map(|k| m[k * d + i] * m[k * d + j]).sum();
            inv[i * d + j] = s;
            inv[j * d + i] = s;
        }
    }
    Some(inv)
}

/// A position's (or all positions') mean and inverse covariance.
type MeanAndInverse = (Vec<f32>, Vec<f32>);

/// Mean (P x d) and inverse covariance (P x d x d) per position from
/// features laid out (N, d, P) in `feats`, covariance regularised by `eps`·I.
/// Errors name the first position whose covariance is not invertible.
pub fn fit_positions(feats: &[f32], n: usize, d: usize, p: usize, eps: f64) -> Result<MeanAndInverse, String> {
    if n < 2 {
        return Err(format!("PaDiM needs at least 2 training images, got {n}"));
    }
    let per_pos: Vec<Result<MeanAndInverse, String>> = (0..p)
        .into_par_iter()
        .map(|pos| {
            let x = |i: usize, c: usize| feats[(i * d + c) * p + pos] as f64;
            let mean: Vec<f64> = (0..d).map(|c| (0..n).map(|i| x(i, c)).sum::<f64>() / n as f64).collect();
            let centred: Vec<f64> = (0..n).flat_map(|i| (0..d).map(move |c| (i, c))).map(|(i, c)| x(i, c) - mean[c]).collect();
            let mut cov = vec![0f64; d * d];
            for i in 0..n {
                let row = &centred[i * d..(i + 1) * d];
                for a in 0..d {
                    let ra = row[a];
                    for b in 0..=a {
                        cov[a * d + b] += ra * row[b];
                    }
                }
            }
            for a in 0..d {
                for b in 0..=a {
                    let v = cov[a * d + b] / (n - 1) as f64 + if a == b { eps } else { 0.0 };
                    cov[a * d + b] = v;
                    cov[b * d + a] = v;
                }
            }
            let inv = spd_inverse(&cov, d).ok_or_else(|| format!("the covariance at position {pos} is not positive definite"))?;
            Ok((mean.iter().map(|&v| v as f32).collect(), inv.iter().map(|&v| v as f32).collect()))
        })
        .collect();
    let mut means = Vec::with_capacity(p * d);
    let mut invs = Vec::with_capacity(p * d * d);
    for r in per_pos {
        let (m, i) = r?;
        means.extend(m);
        invs.extend(i);
    }
    Ok((means, invs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let d = 5;
        // A = Bᵀ B + I is SPD.
        let b: Vec<f64> = (0..d * d).map(|i| ((i * 7919) % 13) as f64 / 13.0 - 0.4).collect();
        let mut a = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[k * d + i] * b[k * d + j]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
            }
        }
        let inv = spd_inverse(&a, d).unwrap();
        for i in 0..d {
            for j in 0..d {
                let v: f64 = (0..d).map(|k| a[i * d + k] * inv[k * d + j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10, "({i},{j}) = {v}");
            }
        }
        assert!(spd_inverse(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }

    #[test]
    fn fitted_gaussian_matches_sample_statistics() {
        // Two positions, d = 2, three images.
        let (n, d, p) = (3, 2, 2);
        let vals = [[1.0f32, 2.0], [3.0, 2.0], [2.0, 5.0]]; // (image, channel) at position 0
        let mut feats = vec![0f32; n * d * p];
        for i in 0..n {
            for c in 0..d {
                feats[(i * d + c) * p] = vals[i][c];
                feats[(i * d + c) * p + 1] = 7.0 * vals[i][c];
            }
        }
        let (mean, inv) = fit_positions(&feats, n, d, p, 0.01).unwrap();
        assert_eq!(&mean[..2], &[2.0, 3.0]);
        // cov = [[1, 0], [0, 3]] + 0.01 I -> inverse diag(1/1.01, 1/3.01).
        assert!((inv[0] - 1.0 / 1.01).abs() < 1e-6 && inv[1].abs() < 1e-6 && (inv[3] - 1.0 / 3.01).abs() < 1e-6);
        assert!(fit_positions(&feats, 1, d, p, 0.01).is_err());
    }
}

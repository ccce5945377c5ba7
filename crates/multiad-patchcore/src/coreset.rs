//! Greedy coreset subsampling (PatchCore §3.2): iteratively pick the patch
//! farthest from those already picked, on a random projection of the
//! features (Johnson-Lindenstrauss) to keep each step cheap. As in the
//! reference implementation, the first distances are the mean distance to a
//! few random starting points, so the first pick is not itself random.

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

/// How the coreset is drawn.
#[derive(Debug, Clone, Copy)]
pub struct CoresetOptions {
    /// Patches to keep.
    pub size: usize,
    /// Dimensions of the random projection (0 = none).
    pub projection_dim: usize,
    /// Random starting points whose mean distance seeds the search.
    pub start_points: usize,
    pub seed: u64,
}

/// A seeded Gaussian projection matrix (d x k), entries N(0, 1/k).
pub fn projection_matrix(d: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0 / (k as f32).sqrt()).expect("valid normal");
    (0..d * k).map(|_| normal.sample(&mut rng)).collect()
}

/// `x` (n x d) times `p` (d x k), row-major, in parallel over rows.
pub fn project(x: &[f32], n: usize, d: usize, p: &[f32], k: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * k];
    out.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
        let xi = &x[i * d..(i + 1) * d];
        for (j, &v) in xi.iter().enumerate() {
            if v != 0.0 {
                let pj = &p[j * k..(j + 1) * k];
                for (o, &w) in row.iter_mut().zip(pj) {
                    *o += v * w;
                }
            }
        }
    });
    out
}

/// Euclidean distance; 16 independent partial sums so that the compiler
/// vectorises the loop (a single running sum is a serial dependency).
pub fn dist(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    (acc.iter().sum::<f32>() + tail).sqrt()
}

/// Indices (in pick order) of a greedy coreset of the `n` rows of `x` (n x d).
pub fn greedy_coreset(x: &[f32], n: usize, d: usize, opts: CoresetOptions) -> Vec<usize> {
    let size = opts.size.min(n);
    if size == n {
        return (0..n).collect();
    }
    let (feats, d) = if opts.projection_dim > 0 && opts.projection_dim < d {
        let p = projection_matrix(d, opts.projection_dim, opts.seed ^ 0xc0e5_e700_0000_0001);
        (project(x, n, d, &p, opts.projection_dim), opts.projection_dim)
    } else {
        (x.to_vec(), d)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let starts: Vec<usize> = sample(&mut rng, n, opts.start_points.clamp(1, n)).into_iter().collect();
    let mut min_d: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| {
            let r = &feats[i * d..(i + 1) * d];
            starts.iter().map(|&s| dist(r, &feats[s * d..(s + 1) * d])).sum::<f32>() / starts.len() as f32
        })
        .collect();
    let mut picked = Vec::with_capacity(size);
    const CHUNK: usize = 4096;
    for _ in 0..size {
        // argmax of the current distances (first index on ties)
        let sel = argmax(&min_d);
        picked.push(sel);
        let c = feats[sel * d..(sel + 1) * d].to_vec();
        min_d.par_chunks_mut(CHUNK).enumerate().for_each(|(k, chunk)| {
            for (j, m) in chunk.iter_mut().enumerate() {
                let i = k * CHUNK + j;
                let v = dist(&feats[i * d..(i + 1) * d], &c);
                if v < *m {
                    *m = v;
                }
            }
        });
    }
    picked
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_far_points_first_and_covers_clusters() {
        // Three tight clusters on a line; a coreset of 3 takes one of each.
        let mut x = Vec::new();
        for c in [0.0f32, 10.0, 20.0] {
            for k in 0..20 {
                x.extend([c + k as f32 * 0.01, 0.0]);
            }
        }
        let opts = CoresetOptions { size: 3, projection_dim: 0, start_points: 5, seed: 1 };
        let picked = greedy_coreset(&x, 60, 2, opts);
        let mut clusters: Vec<usize> = picked.iter().map(|i| i / 20).collect();
        clusters.sort();
        assert_eq!(clusters, vec![0, 1, 2]);
        // Seeded: the same seed gives the same picks.
        assert_eq!(picked, greedy_coreset(&x, 60, 2, opts));
        // Asking for everything returns everything.
        assert_eq!(greedy_coreset(&x, 60, 2, CoresetOptions { size: 100, ..opts }).len(), 60);
    }

    #[test]
    fn projection_roughly_preserves_distances() {
        let d = 256;
        let k = 128;
        let p = projection_matrix(d, k, 3);
        let a: Vec<f32> = (0..d).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..d).map(|i| ((i * 53) % 7) as f32 - 3.0).collect();
        let pa = project(&a, 1, d, &p, k);
        let pb = project(&b, 1, d, &p, k);
        let ratio = dist(&pa, &pb) / dist(&a, &b);
        assert!((0.7..1.3).contains(&ratio), "distance ratio {ratio}");
    }
}

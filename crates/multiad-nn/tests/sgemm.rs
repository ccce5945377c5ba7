//! Our matrix-product kernels against a plain triple loop, on shapes that
//! leave partial tiles and blocks, with transposed operands, accumulation
//! and both parallel splits.

use gemm::Parallelism;
use multiad_nn::sgemm::{gemm, Backend, Mat};
use rand::{Rng, SeedableRng};

#[allow(clippy::too_many_arguments)] // a test helper: the product's shape and strides
fn reference(m: usize, n: usize, k: usize, a: Mat, b: Mat, c0: &[f32], rs: usize, accumulate: bool) -> Vec<f32> {
    let mut c = c0.to_vec();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0f64;
            for p in 0..k {
                s += a.data[i * a.rs + p * a.cs] as f64 * b.data[p * b.rs + j * b.cs] as f64;
            }
            let o = &mut c[i * rs + j];
            *o = if accumulate { *o + s as f32 } else { s as f32 };
        }
    }
    c
}

#[allow(clippy::too_many_arguments)] // a test helper: the product's shape and strides
fn check(
    backend: Backend,
    m: usize,
    n: usize,
    k: usize,
    transpose_a: bool,
    transpose_b: bool,
    accumulate: bool,
    par: Parallelism,
    rng: &mut rand_chacha::ChaCha8Rng,
) {
    let av: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
    let bv: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let a = if transpose_a { Mat { data: &av, rs: 1, cs: m } } else { Mat { data: &av, rs: k, cs: 1 } };
    let b = if transpose_b { Mat { data: &bv, rs: 1, cs: k } } else { Mat { data: &bv, rs: n, cs: 1 } };
    let rs = n + 3; // rows of the output further apart than its width
    let c0: Vec<f32> = (0..m * rs).map(|_| rng.random_range(-1.0..1.0)).collect();
    let want = reference(m, n, k, a, b, &c0, rs, accumulate);
    let mut got = c0.clone();
    gemm(backend, &mut got, rs, m, n, k, a, b, accumulate, par);
    for i in 0..m {
        for j in 0..rs {
            let (g, w) = (got[i * rs + j], want[i * rs + j]);
            let tol = 1e-4 * (k as f32).sqrt().max(1.0);
            assert!((g - w).abs() <= tol, "{backend:?} m{m} n{n} k{k} tA{transpose_a} tB{transpose_b} acc{accumulate} {par:?}: ({i},{j}) {g} vs {w}");
        }
    }
}

#[test]
fn every_backend_matches_the_triple_loop() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let shapes = [(1, 1, 1), (5, 7, 3), (12, 32, 192), (13, 33, 193), (30, 70, 400), (500, 40, 20), (64, 4200, 9), (25, 100, 0)];
    for backend in Backend::available() {
        for &(m, n, k) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                for accumulate in [false, true] {
                    for par in [Parallelism::None, Parallelism::Rayon(2), Parallelism::Rayon(3)] {
                        check(backend, m, n, k, ta, tb, accumulate, par, &mut rng);
                    }
                }
            }
        }
    }
}

#[test]
fn chosen_backend_is_available() {
    assert!(Backend::available().contains(&Backend::chosen()));
}

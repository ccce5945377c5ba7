//! Nearest-neighbour search of patch features in the memory bank:
//! ‖q − m‖² = ‖q‖² + ‖m‖² − 2 q·m with the dot products as one matrix
//! product per block of the bank (gemm), so that a query costs what the
//! arithmetic costs; [`brute_force`] is the plain loop it is checked and
//! benchmarked against.

use candle_core::{Result, Tensor, D};

use crate::coreset::dist;

/// Bank rows per matrix product: bounds the (queries x block) scratch.
const BLOCK: usize = 8192;

/// The memory bank with its squared norms, ready for queries.
pub struct Bank {
    /// (M, D)
    pub features: Tensor,
    /// (1, M) per block
    norms: Vec<Tensor>,
    blocks: Vec<Tensor>,
}

impl Bank {
    pub fn new(features: Tensor) -> Result<Self> {
        let m = features.dim(0)?;
        let mut blocks = Vec::new();
        let mut norms = Vec::new();
        let mut start = 0;
        while start < m {
            let len = BLOCK.min(m - start);
            let b = features.narrow(0, start, len)?.contiguous()?;
            norms.push(b.sqr()?.sum(1)?.unsqueeze(0)?);
            blocks.push(b.t()?.contiguous()?);
            start += len;
        }
        Ok(Self { features, norms, blocks })
    }

    pub fn len(&self) -> usize {
        self.features.dim(0).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distance to, and index of, the nearest bank row for each query row (Q, D).
    pub fn nearest(&self, q: &Tensor) -> Result<(Vec<f32>, Vec<u32>)> {
        let nq = q.dim(0)?;
        let qn = q.sqr()?.sum_keepdim(1)?; // (Q, 1)
        let mut best = vec![f32::INFINITY; nq];
        let mut idx = vec![0u32; nq];
        let mut offset = 0u32;
        for (bt, bn) in self.blocks.iter().zip(&self.norms) {
            let d2 = q.matmul(bt)?.affine(-2.0, 0.0)?.broadcast_add(&qn)?.broadcast_add(bn)?;
            let mins: Vec<f32> = d2.min(D::Minus1)?.to_vec1()?;
            let args: Vec<u32> = d2.argmin(D::Minus1)?.to_vec1()?;
            for i in 0..nq {
                if mins[i] < best[i] {
                    best[i] = mins[i];
                    idx[i] = args[i] + offset;
                }
            }
            offset += bt.dim(1)? as u32;
        }
        Ok((best.into_iter().map(|v| v.max(0.0).sqrt()).collect(), idx))
    }

    /// The `k` nearest bank rows of bank row `row` (itself included), by distance.
    pub fn neighbours_of(&self, row: usize, k: usize) -> Result<Vec<usize>> {
        let q = self.features.narrow(0, row, 1)?;
        let all: Vec<f32> = self.features.broadcast_sub(&q)?.sqr()?.sum(1)?.to_vec1()?;
        let mut order: Vec<usize> = (0..all.len()).collect();
        order.sort_by(|&a, &b| all[a].total_cmp(&all[b]).then(a.cmp(&b)));
        order.truncate(k);
        Ok(order)
    }
}

/// The plain loop: every query against every bank row. For checking and benchmarking.
pub fn brute_force(q: &[f32], bank: &[f32], d: usize) -> (Vec<f32>, Vec<u32>) {
    let m = bank.len() / d;
    q.chunks_exact(d)
        .map(|qi| {
            let mut best = (f32::INFINITY, 0u32);
            for j in 0..m {
                let v = dist(qi, &bank[j * d..(j + 1) * d]);
                if v < best.0 {
                    best = (v, j as u32);
                }
            }
            best
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn blocked_gemm_search_equals_brute_force() {
        let (nq, m, d) = (37, BLOCK + 300, 24); // two blocks, the second partial
        let q: Vec<f32> = (0..nq * d).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let bank: Vec<f32> = (0..m * d).map(|i| ((i * 104729) % 97) as f32 / 48.0 - 1.0).collect();
        let b = Bank::new(Tensor::from_vec(bank.clone(), (m, d), &Device::Cpu).unwrap()).unwrap();
        let (dist, idx) = b.nearest(&Tensor::from_vec(q.clone(), (nq, d), &Device::Cpu).unwrap()).unwrap();
        let (bd, bi) = brute_force(&q, &bank, d);
        for i in 0..nq {
            // Equal up to rounding; the index may differ only between exact ties.
            assert!((dist[i] - bd[i]).abs() < 1e-3, "query {i}: {} vs {}", dist[i], bd[i]);
            let alt = super::dist(&q[i * d..(i + 1) * d], &bank[idx[i] as usize * d..(idx[i] as usize + 1) * d]);
            assert!((alt - bd[i]).abs() < 1e-3, "query {i}: index {} vs {}", idx[i], bi[i]);
        }
        let nb = b.neighbours_of(5, 3).unwrap();
        assert_eq!(nb[0], 5);
        assert_eq!(nb.len(), 3);
    }
}

//! f32 matrix products for the convolutions: packed, cache-blocked, with
//! hand-written AVX-512 and AVX2 register kernels.
//!
//! Why: on the AMD EPYC (Zen 4) machine of 2026-11-24 the `gemm` crate
//! (candle's) reached 52 GFLOP/s per core where a register-blocked FMA loop
//! reaches 114. Most of that gap turned out to be the dev profile's debug
//! assertions in dependencies (now off: the crate reaches ~97), so these
//! kernels are an opt-in alternative (`MULTIAD_GEMM=avx512`): with two
//! threads on one product 0.84-1.80x the crate, on one thread 0.73-1.13x. `cargo xtask bench conv`
//! prints all of them side by side.
//!
//! Layout (BLIS's loop order, vectorised along the columns of C because our
//! outputs are row-major `(channels, positions)`):
//!
//! ```text
//! for each block of NC columns           B block (KC x NC) packed: in L3
//!   for each block of KC of the depth
//!     for each block of MC rows          A block (MC x KC) packed: in L2
//!       for each NR-column panel of B    B panel (KC x NR): stays in L1
//!         for each MR-row panel of A     MR x NR tile of C in registers
//! ```
//!
//! Panels are zero-padded to whole tiles; a tile that sticks out of C is
//! computed into a scratch tile and only its valid part added back.

pub use gemm::Parallelism;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::OnceLock;

/// Depth of a packed block: a KC x NR panel of B (24 KiB for AVX-512's
/// NR = 32) must stay in a 32 KiB L1 beside the streamed A panel.
const KC: usize = 192;
/// Rows of a packed A block (MC x KC floats, 368 KiB for MC = 480: in L2).
const MC: usize = 480;
/// Columns of a packed B block (KC x NC floats, 3 MiB: in L3).
const NC: usize = 4096;

/// Which kernel computes the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The `gemm` crate (candle's): any CPU.
    GemmCrate,
    /// Ours, 6 x 16 tiles of 256-bit FMAs (x86-64 with AVX2 and FMA).
    Avx2,
    /// Ours, 12 x 32 tiles of 512-bit FMAs (x86-64 with AVX-512F).
    Avx512,
}

impl Backend {
    /// The kernel the convolutions use: the `gemm` crate unless
    /// `MULTIAD_GEMM` names another this CPU runs (`crate`, `avx2`,
    /// `avx512`). Ours stay opt-in: single-threaded (the per-image path)
    /// the crate was faster once dependencies were built without debug
    /// assertions, and the `paper` teacher forward took 2.31 s with ours
    /// against 1.52 s with the crate (docs/performance.md).
    pub fn chosen() -> Backend {
        static CHOSEN: OnceLock<Backend> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let wanted = std::env::var("MULTIAD_GEMM").ok();
            Backend::available().into_iter().find(|b| wanted.as_deref().map(str::trim) == Some(b.name())).unwrap_or(Backend::GemmCrate)
        })
    }

    /// The kernels this CPU can run, the `gemm` crate first.
    pub fn available() -> Vec<Backend> {
        let mut v = vec![Backend::GemmCrate];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Backend::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                v.push(Backend::Avx512);
            }
        }
        v
    }

    /// The name `MULTIAD_GEMM` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::GemmCrate => "crate",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }
}

/// A strided read-only matrix: element (i, j) at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// dst (m, n) = a (m, k) · b (k, n), plus dst when `accumulate`; dst's rows
/// are `dst_rs` apart and its columns contiguous.
///
/// # Panics
/// When a matrix is too small for the shape (a caller's bug).
#[allow(clippy::too_many_arguments)]
pub fn gemm(backend: Backend, dst: &mut [f32], dst_rs: usize, m: usize, n: usize, k: usize, a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= (m - 1) * dst_rs + n && dst_rs >= n, "sgemm: destination too small");
    if k > 0 {
        assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs, "sgemm: left operand too small");
        assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs, "sgemm: right operand too small");
    }
    let kernel = match backend {
        Backend::GemmCrate => return gemm_crate(dst, dst_rs, m, n, k, a, b, accumulate, par),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => Kernel { mr: 6, nr: 16, run: x86::tile_avx2 },
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => Kernel { mr: 12, nr: 32, run: x86::tile_avx512 },
        #[cfg(not(target_arch = "x86_64"))]
        _ => return gemm_crate(dst, dst_rs, m, n, k, a, b, accumulate, par),
    };
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_rs).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let threads = match par {
        Parallelism::Rayon(t) if t > 1 => t,
        _ => 1,
    };
    let out = SendPtr(dst.as_mut_ptr());
    // Split the columns when each thread gets at least two panels of them,
    // else the rows; each part packs its own blocks (no synchronisation).
    let parts: Vec<(usize, usize, usize, usize)> = if threads > 1 && n >= 2 * threads * kernel.nr {
        split(n, threads, kernel.nr).into_iter().map(|(j0, nj)| (0, m, j0, nj)).collect()
    } else if threads > 1 && m >= 2 * threads * kernel.mr {
        split(m, threads, kernel.mr).into_iter().map(|(i0, mi)| (i0, mi, 0, n)).collect()
    } else {
        vec![(0, m, 0, n)]
    };
    let run = |&(i0, mi, j0, nj): &(usize, usize, usize, usize)| {
        let out = &out;
        // SAFETY: the parts cover disjoint rectangles of dst, inside it
        // (asserted above), and the operands are only read.
        unsafe { serial(&kernel, out.0.add(i0 * dst_rs + j0), dst_rs, mi, nj, k, a.offset(i0, 0), b.offset(0, j0), accumulate) }
    };
    if parts.len() > 1 {
        parts.par_iter().for_each(run);
    } else {
        run(&parts[0]);
    }
}

impl<'a> Mat<'a> {
    fn offset(self, i: usize, j: usize) -> Mat<'a> {
        let start = i * self.rs + j * self.cs;
        Mat { data: &self.data[start.min(self.data.len())..], ..self }
    }
}

/// `len` split into `parts` ranges whose starts are multiples of `align`.
fn split(len: usize, parts: usize, align: usize) -> Vec<(usize, usize)> {
    let units = len.div_ceil(align);
    let per = units.div_ceil(parts);
    (0..parts).map(|p| (p * per * align, ((p + 1) * per * align).min(len))).filter(|(s, e)| s < e).map(|(s, e)| (s, e - s)).collect()
}

struct SendPtr(*mut f32);
// SAFETY: used only to hand each thread a disjoint part of one output.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// A register kernel: C tile (mr x nr, rows `ldc` apart) = (C +) A panel ·
/// B panel, the panels packed as `[kc][mr]` and `[kc][nr]`.
#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    run: unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load_c: bool),
}

thread_local! {
    /// Packing buffers, kept per thread so that products allocate nothing.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// One thread's product over a rectangle of dst.
///
/// # Safety
/// `dst` must address an `m x n` matrix with rows `dst_rs` apart that no
/// one else touches during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn serial(kern: &Kernel, dst: *mut f32, dst_rs: usize, m: usize, n: usize, k: usize, a: Mat, b: Mat, accumulate: bool) {
    PACKED.with(|cell| {
        let mut fresh = (Vec::new(), Vec::new());
        let mut borrowed = cell.try_borrow_mut();
        let (pa, pb) = match borrowed.as_deref_mut() {
            Ok(bufs) => (&mut bufs.0, &mut bufs.1),
            Err(_) => (&mut fresh.0, &mut fresh.1),
        };
        let (mr, nr) = (kern.mr, kern.nr);
        let mut tile = vec![0f32; mr * nr];
        for j0 in (0..n).step_by(NC) {
            let nc = NC.min(n - j0);
            let panels_b = nc.div_ceil(nr);
            for p0 in (0..k).step_by(KC) {
                let kc = KC.min(k - p0);
                pack_b(pb, b, p0, kc, j0, nc, nr);
                let load_c = accumulate || p0 > 0;
                for i0 in (0..m).step_by(MC) {
                    let mc = MC.min(m - i0);
                    pack_a(pa, a, i0, mc, p0, kc, mr);
                    for jp in 0..panels_b {
                        let nj = nr.min(nc - jp * nr);
                        let bp = pb.as_ptr().add(jp * kc * nr);
                        for ip in 0..mc.div_ceil(mr) {
                            let mi = mr.min(mc - ip * mr);
                            let ap = pa.as_ptr().add(ip * kc * mr);
                            let c = dst.add((i0 + ip * mr) * dst_rs + j0 + jp * nr);
                            if mi == mr && nj == nr {
                                (kern.run)(kc, ap, bp, c, dst_rs, load_c);
                            } else {
                                (kern.run)(kc, ap, bp, tile.as_mut_ptr(), nr, false);
                                for i in 0..mi {
                                    let row = std::slice::from_raw_parts_mut(c.add(i * dst_rs), nj);
                                    let t = &tile[i * nr..i * nr + nj];
                                    if load_c {
                                        row.iter_mut().zip(t).for_each(|(o, v)| *o += v);
                                    } else {
                                        row.copy_from_slice(t);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// A rows i0..i0+mc, depth p0..p0+kc, as panels `[panel][kc][mr]`
/// (rows past mc zero).
fn pack_a(buf: &mut Vec<f32>, a: Mat, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize) {
    let panels = mc.div_ceil(mr);
    buf.clear();
    buf.resize(panels * kc * mr, 0.0);
    for ip in 0..panels {
        let panel = &mut buf[ip * kc * mr..(ip + 1) * kc * mr];
        let rows = mr.min(mc - ip * mr);
        for i in 0..rows {
            let base = (i0 + ip * mr + i) * a.rs + p0 * a.cs;
            if a.cs == 1 {
                for (p, &v) in a.data[base..base + kc].iter().enumerate() {
                    panel[p * mr + i] = v;
                }
            } else {
                for p in 0..kc {
                    panel[p * mr + i] = a.data[base + p * a.cs];
                }
            }
        }
    }
}

/// B depth p0..p0+kc, columns j0..j0+nc, as panels `[panel][kc][nr]`
/// (columns past nc zero).
fn pack_b(buf: &mut Vec<f32>, b: Mat, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize) {
    let panels = nc.div_ceil(nr);
    buf.clear();
    buf.resize(panels * kc * nr, 0.0);
    for jp in 0..panels {
        let panel = &mut buf[jp * kc * nr..(jp + 1) * kc * nr];
        let cols = nr.min(nc - jp * nr);
        let jb = j0 + jp * nr;
        if b.cs == 1 {
            for p in 0..kc {
                let base = (p0 + p) * b.rs + jb;
                panel[p * nr..p * nr + cols].copy_from_slice(&b.data[base..base + cols]);
            }
        } else {
            // Transposed B (rows contiguous along the depth): read each
            // column once, contiguously.
            for j in 0..cols {
                let base = p0 * b.rs + (jb + j) * b.cs;
                if b.rs == 1 {
                    for (p, &v) in b.data[base..base + kc].iter().enumerate() {
                        panel[p * nr + j] = v;
                    }
                } else {
                    for p in 0..kc {
                        panel[p * nr + j] = b.data[base + p * b.rs];
                    }
                }
            }
        }
    }
}

/// Through the `gemm` crate: any CPU.
#[allow(clippy::too_many_arguments)]
fn gemm_crate(dst: &mut [f32], dst_rs: usize, m: usize, n: usize, k: usize, a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    // SAFETY: the sizes were checked against the slices by `gemm`, and dst
    // does not alias the operands (it is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 12 x 32 tile: 24 zmm accumulators; per depth step two loads of B and
    /// twelve broadcasts of A feed 24 FMAs.
    ///
    /// # Safety
    /// AVX-512F present; `a` holds kc x 12, `b` kc x 32 floats; `c` 12 rows
    /// of 32 floats, `ldc` apart.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load_c: bool) {
        let mut acc = [[_mm512_setzero_ps(); 2]; 12];
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(p * 32));
            let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
            let ap = a.add(p * 12);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*ap.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let r = c.add(i * ldc);
            if load_c {
                _mm512_storeu_ps(r, _mm512_add_ps(_mm512_loadu_ps(r), row[0]));
                _mm512_storeu_ps(r.add(16), _mm512_add_ps(_mm512_loadu_ps(r.add(16)), row[1]));
            } else {
                _mm512_storeu_ps(r, row[0]);
                _mm512_storeu_ps(r.add(16), row[1]);
            }
        }
    }

    /// 6 x 16 tile: 12 ymm accumulators.
    ///
    /// # Safety
    /// AVX2 and FMA present; `a` holds kc x 6, `b` kc x 16 floats; `c` 6
    /// rows of 16 floats, `ldc` apart.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, load_c: bool) {
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * 16));
            let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
            let ap = a.add(p * 6);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_set1_ps(*ap.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let r = c.add(i * ldc);
            if load_c {
                _mm256_storeu_ps(r, _mm256_add_ps(_mm256_loadu_ps(r), row[0]));
                _mm256_storeu_ps(r.add(8), _mm256_add_ps(_mm256_loadu_ps(r.add(8)), row[1]));
            } else {
                _mm256_storeu_ps(r, row[0]);
                _mm256_storeu_ps(r.add(8), row[1]);
            }
        }
    }
}

//! AUPRO: area under the per-region-overlap curve, as defined by the MVTec AD
//! reference evaluation (Bergmann et al.).
//!
//! For every threshold t: FPR(t) = share of all normal pixels (mask 0, over the
//! whole test set) with score >= t; PRO(t) = mean over all ground-truth
//! connected components (8-connectivity, counted over the whole test set) of
//! the share of the component's pixels with score >= t. The curve runs from
//! (0, 0) to (1, 1); it is integrated by the trapezoidal rule up to
//! FPR = limit (interpolating the point at the limit) and divided by the limit.

use crate::components::label_components;
use crate::roc::sweep;
use crate::sort::{key_of, radix_sort, score_of};
use crate::MetricError;

/// The reference FPR limit of the MVTec AD evaluation.
pub const DEFAULT_FPR_LIMIT: f64 = 0.3;

/// One test image's anomaly map and ground-truth mask, row-major, same size.
#[derive(Debug, Clone, Copy)]
pub struct AnomalyMap<'a> {
    pub scores: &'a [f32],
    pub mask: &'a [u8],
    pub width: usize,
    pub height: usize,
}

/// The PRO curve's points, FPR ascending (thresholds descending).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProCurve {
    pub fpr: Vec<f64>,
    pub pro: Vec<f64>,
    pub thresholds: Vec<f32>,
}

struct Prepared {
    normal: Vec<u32>,
    /// (key << 32) | global region id, sorted by key.
    defect: Vec<u64>,
    /// 1 / (number of regions * region size), per global region id.
    weight: Vec<f64>,
}

fn prepare(maps: &[AnomalyMap]) -> Result<Prepared, MetricError> {
    let mut normal = Vec::new();
    let mut defect = Vec::new();
    let mut sizes: Vec<u64> = Vec::new();
    let mut offset = 0usize;
    for (n, m) in maps.iter().enumerate() {
        let len = m.width * m.height;
        if m.scores.len() != len || m.mask.len() != len {
            return Err(MetricError::Shape {
                what: format!("map {n}: {}x{} needs {len} values, got {} scores and {} mask pixels", m.width, m.height, m.scores.len(), m.mask.len()),
            });
        }
        if let Some(i) = m.scores.iter().position(|s| s.is_nan()) {
            return Err(MetricError::NaN { index: offset + i });
        }
        offset += len;
        let comps = label_components(m.mask, m.width, m.height);
        let base = sizes.len() as u64;
        sizes.extend_from_slice(&comps.sizes);
        for (&s, &l) in m.scores.iter().zip(&comps.labels) {
            if l == 0 {
                normal.push(key_of(s));
            } else {
                defect.push(((key_of(s) as u64) << 32) | (base + l as u64 - 1));
            }
        }
    }
    if normal.is_empty() {
        return Err(MetricError::OneClass { metric: "AUPRO", missing: "normal-pixel" });
    }
    if sizes.is_empty() {
        return Err(MetricError::OneClass { metric: "AUPRO", missing: "anomalous-region" });
    }
    if sizes.len() > u32::MAX as usize {
        return Err(MetricError::Invalid("more than 2^32 ground-truth regions".into()));
    }
    let r = sizes.len() as f64;
    let weight = sizes.iter().map(|&s| 1.0 / (r * s as f64)).collect();
    rayon::join(|| radix_sort(&mut normal), || radix_sort(&mut defect));
    Ok(Prepared { normal, defect, weight })
}

/// Calls `f(threshold_key, fpr, pro)` for each distinct threshold, high to low.
fn walk(p: &Prepared, mut f: impl FnMut(u32, f64, f64)) {
    // The sweep needs plain keys for the defect side; the region ids are read
    // back from the same positions.
    let defect_keys: Vec<u32> = p.defect.iter().map(|&d| (d >> 32) as u32).collect();
    let n_normal = p.normal.len() as f64;
    let mut pro = 0.0f64;
    let mut consumed = 0usize; // defect pixels counted so far, from the top
    for s in sweep(&p.normal, &defect_keys) {
        let tp = s.tp as usize;
        for &d in &p.defect[p.defect.len() - tp..p.defect.len() - consumed] {
            pro += p.weight[(d & 0xffff_ffff) as usize];
        }
        consumed = tp;
        f(s.key, (s.fp as f64 / n_normal).min(1.0), pro.clamp(0.0, 1.0));
    }
}

/// The whole PRO curve (for plots); memory grows with the number of distinct
/// scores, so prefer [`aupro`] for the metric alone.
pub fn pro_curve(maps: &[AnomalyMap]) -> Result<ProCurve, MetricError> {
    let p = prepare(maps)?;
    let mut c = ProCurve { fpr: vec![0.0], pro: vec![0.0], thresholds: vec![f32::INFINITY] };
    walk(&p, |k, fpr, pro| {
        c.fpr.push(fpr);
        c.pro.push(pro);
        c.thresholds.push(score_of(k));
    });
    Ok(c)
}

/// Normalised area under the PRO curve up to `fpr_limit` (0.3 in the MVTec AD
/// protocol), in [0, 1].
pub fn aupro(maps: &[AnomalyMap], fpr_limit: f64) -> Result<f64, MetricError> {
    if !(fpr_limit > 0.0 && fpr_limit <= 1.0) {
        return Err(MetricError::Invalid(format!("FPR limit {fpr_limit} is not in (0, 1]")));
    }
    let p = prepare(maps)?;
    let mut area = 0.0f64;
    let (mut x0, mut y0) = (0.0f64, 0.0f64);
    let mut done = false;
    let mut step = |x: f64, y: f64| {
        if done {
            return;
        }
        if x <= fpr_limit {
            area += 0.5 * (y + y0) * (x - x0);
            x0 = x;
            y0 = y;
        } else {
            // Interpolate the curve at the limit and stop.
            let y_lim = y0 + (y - y0) * (fpr_limit - x0) / (x - x0);
            area += 0.5 * (y_lim + y0) * (fpr_limit - x0);
            done = true;
        }
    };
    walk(&p, |_, fpr, pro| step(fpr, pro));
    step(1.0, 1.0); // the reference curve ends at (1, 1)
    Ok(area / fpr_limit)
}

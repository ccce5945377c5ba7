//! Threshold sweeps over binary-labelled scores: AUROC, F1-max, ROC curves.

use crate::sort::{key_of, radix_sort, score_of};
use crate::MetricError;

/// Scores collected one image or one pixel map at a time. Only sortable keys
/// are stored (4 bytes per score), split by label, so the label array costs
/// nothing.
#[derive(Debug, Default, Clone)]
pub struct BinaryScores {
    negatives: Vec<u32>,
    positives: Vec<u32>,
    seen: usize,
}

impl BinaryScores {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self { negatives: Vec::with_capacity(n), positives: Vec::new(), seen: 0 }
    }

    /// Adds one score; `anomalous` is the ground-truth label.
    pub fn push(&mut self, score: f32, anomalous: bool) -> Result<(), MetricError> {
        if score.is_nan() {
            return Err(MetricError::NaN { index: self.seen });
        }
        self.seen += 1;
        if anomalous {
            self.positives.push(key_of(score));
        } else {
            self.negatives.push(key_of(score));
        }
        Ok(())
    }

    /// Adds a whole map: `mask[i] != 0` marks pixel `i` anomalous.
    pub fn push_map(&mut self, scores: &[f32], mask: &[u8]) -> Result<(), MetricError> {
        if scores.len() != mask.len() {
            return Err(MetricError::Shape { what: format!("{} scores but {} mask pixels", scores.len(), mask.len()) });
        }
        if let Some(i) = scores.iter().position(|s| s.is_nan()) {
            return Err(MetricError::NaN { index: self.seen + i });
        }
        self.seen += scores.len();
        for (&s, &m) in scores.iter().zip(mask) {
            if m != 0 {
                self.positives.push(key_of(s));
            } else {
                self.negatives.push(key_of(s));
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.negatives.len() + self.positives.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sorts both classes (in parallel) so that any number of metrics can be
    /// read off without sorting again.
    pub fn into_sorted(self) -> SortedScores {
        let BinaryScores { mut negatives, mut positives, .. } = self;
        rayon::join(|| radix_sort(&mut negatives), || radix_sort(&mut positives));
        SortedScores { negatives, positives }
    }

    pub fn auroc(self) -> Result<f64, MetricError> {
        self.into_sorted().auroc()
    }
}

/// Both classes' keys sorted ascending.
#[derive(Debug, Clone)]
pub struct SortedScores {
    negatives: Vec<u32>,
    positives: Vec<u32>,
}

/// The best F1 score over all thresholds and the threshold that reaches it
/// (scores `>= threshold` are called anomalous).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct F1Max {
    pub f1: f64,
    pub threshold: f32,
}

/// ROC curve points from the strictest threshold to the loosest, starting at
/// (0, 0) with threshold +inf, as scikit-learn's `roc_curve` does.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f32>,
}

/// One step of the sweep: after accepting every score `>= threshold`, this many
/// negatives (false positives) and positives (true positives) are above it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepPoint {
    pub key: u32,
    pub fp: u64,
    pub tp: u64,
}

/// Walks the distinct thresholds from the highest score down, merging the two
/// sorted arrays from their ends.
pub(crate) fn sweep<'a>(neg: &'a [u32], pos: &'a [u32]) -> impl Iterator<Item = SweepPoint> + 'a {
    let (mut i, mut j) = (neg.len(), pos.len());
    std::iter::from_fn(move || {
        if i == 0 && j == 0 {
            return None;
        }
        let key = match (i, j) {
            (0, _) => pos[j - 1],
            (_, 0) => neg[i - 1],
            _ => neg[i - 1].max(pos[j - 1]),
        };
        while i > 0 && neg[i - 1] == key {
            i -= 1;
        }
        while j > 0 && pos[j - 1] == key {
            j -= 1;
        }
        Some(SweepPoint { key, fp: (neg.len() - i) as u64, tp: (pos.len() - j) as u64 })
    })
}

impl SortedScores {
    pub fn num_negatives(&self) -> usize {
        self.negatives.len()
    }

    pub fn num_positives(&self) -> usize {
        self.positives.len()
    }

    fn check_both(&self, metric: &'static str) -> Result<(), MetricError> {
        if self.negatives.is_empty() {
            return Err(MetricError::OneClass { metric, missing: "normal" });
        }
        if self.positives.is_empty() {
            return Err(MetricError::OneClass { metric, missing: "anomalous" });
        }
        Ok(())
    }

    /// Area under the ROC curve by the trapezoidal rule over distinct
    /// thresholds, which equals the Mann-Whitney statistic with ties counted
    /// one half. Accumulated in integers, so it is exact up to the final
    /// division.
    pub fn auroc(&self) -> Result<f64, MetricError> {
        self.check_both("AUROC")?;
        let (mut prev_fp, mut prev_tp) = (0u64, 0u64);
        let mut twice_area: u128 = 0;
        for p in sweep(&self.negatives, &self.positives) {
            twice_area += (p.fp - prev_fp) as u128 * (p.tp + prev_tp) as u128;
            prev_fp = p.fp;
            prev_tp = p.tp;
        }
        let denom = 2.0 * self.negatives.len() as f64 * self.positives.len() as f64;
        Ok(twice_area as f64 / denom)
    }

    /// Maximum F1 over all thresholds (precision = tp / (tp + fp), recall = tp / P).
    pub fn f1_max(&self) -> Result<F1Max, MetricError> {
        if self.positives.is_empty() {
            return Err(MetricError::OneClass { metric: "F1-max", missing: "anomalous" });
        }
        let p = self.positives.len() as f64;
        let mut best = F1Max { f1: 0.0, threshold: f32::INFINITY };
        for s in sweep(&self.negatives, &self.positives) {
            let f1 = 2.0 * s.tp as f64 / (s.tp as f64 + s.fp as f64 + p);
            if f1 > best.f1 {
                best = F1Max { f1, threshold: score_of(s.key) };
            }
        }
        Ok(best)
    }

    /// The ROC curve with collinear intermediate points dropped (they change
    /// neither the plot nor the area), like scikit-learn's
    /// `drop_intermediate=True`.
    pub fn roc_curve(&self) -> Result<RocCurve, MetricError> {
        self.check_both("ROC curve")?;
        let n = self.negatives.len() as f64;
        let p = self.positives.len() as f64;
        let mut pts: Vec<(u64, u64, f32)> = vec![(0, 0, f32::INFINITY)];
        for s in sweep(&self.negatives, &self.positives) {
            // Replace the last point when it lies on the segment from the one
            // before it to this one (same direction, i.e. zero cross product).
            if pts.len() >= 2 {
                let (fa, ta, _) = pts[pts.len() - 2];
                let (fb, tb, _) = pts[pts.len() - 1];
                let cross = (fb - fa) as i128 * (s.tp - ta) as i128 - (tb - ta) as i128 * (s.fp - fa) as i128;
                if cross == 0 {
                    pts.pop();
                }
            }
            pts.push((s.fp, s.tp, score_of(s.key)));
        }
        Ok(RocCurve {
            fpr: pts.iter().map(|q| q.0 as f64 / n).collect(),
            tpr: pts.iter().map(|q| q.1 as f64 / p).collect(),
            thresholds: pts.iter().map(|q| q.2).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(s: &[f32], y: &[bool]) -> SortedScores {
        let mut b = BinaryScores::new();
        for (&s, &y) in s.iter().zip(y) {
            b.push(s, y).unwrap();
        }
        b.into_sorted()
    }

    #[test]
    fn auroc_by_hand() {
        // scikit-learn docs example: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        let s = scores(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(s.auroc().unwrap(), 0.75);
        // A tie between one positive and one negative counts one half:
        // pairs (p,n): (0.5,0.5) tie -> 0.5, (0.5,0.1) -> 1, (0.9,*) -> 2 ; 3.5 / 4
        let s = scores(&[0.1, 0.5, 0.5, 0.9], &[false, false, true, true]);
        assert_eq!(s.auroc().unwrap(), 0.875);
        // All tied -> 0.5.
        let s = scores(&[1.0; 6], &[false, true, false, true, true, false]);
        assert_eq!(s.auroc().unwrap(), 0.5);
    }

    #[test]
    fn one_class_is_an_error() {
        let s = scores(&[0.1, 0.2], &[false, false]);
        assert!(matches!(s.auroc(), Err(MetricError::OneClass { .. })));
        let mut b = BinaryScores::new();
        assert!(matches!(b.push(f32::NAN, true), Err(MetricError::NaN { .. })));
    }

    #[test]
    fn f1_max_by_hand() {
        // Threshold 0.8: tp1 fp0 -> F1 = 2/(1+0+2)=0.667; threshold 0.35: tp2 fp1 -> 4/5 = 0.8;
        // threshold 0.1: tp2 fp2 -> 4/6.
        let s = scores(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        let f = s.f1_max().unwrap();
        assert!((f.f1 - 0.8).abs() < 1e-12);
        assert_eq!(f.threshold, 0.35);
    }

    #[test]
    fn roc_curve_by_hand() {
        // scikit-learn: fpr [0, 0, .5, .5, 1], tpr [0, .5, .5, 1, 1]
        let s = scores(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        let c = s.roc_curve().unwrap();
        assert_eq!(c.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0]);
        assert_eq!(c.tpr, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(c.thresholds[1..], [0.8, 0.4, 0.35, 0.1]);
        // Collinear points vanish: perfectly separated -> (0,0) (0,1) (1,1).
        let s = scores(&[0.1, 0.2, 0.3, 0.7, 0.8, 0.9], &[false, false, false, true, true, true]);
        let c = s.roc_curve().unwrap();
        assert_eq!(c.fpr, vec![0.0, 0.0, 1.0]);
        assert_eq!(c.tpr, vec![0.0, 1.0, 1.0]);
    }
}

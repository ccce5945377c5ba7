//! Turning slices of physical values into 8-bit images.

/// Scales values linearly so that the slice's minimum is 0 and its maximum
/// 255 (rounded); `None` for a constant slice, which carries no image.
pub fn minmax_to_u8(values: &[f32]) -> Option<Vec<u8>> {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    if !(hi > lo) {
        return None;
    }
    let scale = 255.0 / (hi - lo);
    Some(values.iter().map(|&v| ((v - lo) * scale).round().clamp(0.0, 255.0) as u8).collect())
}

/// A CT window: values clipped to [lo, hi] (Hounsfield units) and mapped
/// linearly onto 0..=255.
pub fn window_to_u8(values: &[f32], lo: f32, hi: f32) -> Vec<u8> {
    let scale = 255.0 / (hi - lo);
    values.iter().map(|&v| ((v.clamp(lo, hi) - lo) * scale).round() as u8).collect()
}

/// Global histogram equalisation with OpenCV's `equalizeHist` mapping:
/// lut[v] = round((cdf[v] - cdf_min) * 255 / (n - cdf_min)), where cdf_min is
/// the count of the darkest value present, so the darkest value stays 0.
pub fn equalize_histogram(pixels: &mut [u8]) {
    let mut hist = [0usize; 256];
    for &p in pixels.iter() {
        hist[p as usize] += 1;
    }
    let n = pixels.len();
    let Some(first) = hist.iter().position(|&c| c > 0) else { return };
    let cdf_min = hist[first];
    if cdf_min == n {
        return; // a single value: nothing to spread
    }
    let mut lut = [0u8; 256];
    let mut cdf = 0usize;
    for v in 0..256 {
        cdf += hist[v];
        let x = (cdf.saturating_sub(cdf_min)) as f64 * 255.0 / (n - cdf_min) as f64;
        lut[v] = x.round().clamp(0.0, 255.0) as u8;
    }
    for p in pixels.iter_mut() {
        *p = lut[*p as usize];
    }
}

/// A mirror applied to every slice (image and mask alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flip {
    None,
    /// Rows reversed (top <-> bottom), NumPy's `flipud`.
    Vertical,
    /// Columns reversed (left <-> right), NumPy's `fliplr`.
    Horizontal,
}

impl std::str::FromStr for Flip {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Flip::None),
            "vertical" => Ok(Flip::Vertical),
            "horizontal" => Ok(Flip::Horizontal),
            _ => Err(format!("flip must be none, vertical or horizontal, not {s:?}")),
        }
    }
}

impl Flip {
    pub fn apply<T: Copy>(self, rows: usize, cols: usize, v: &mut [T]) {
        match self {
            Flip::None => {}
            Flip::Vertical => {
                for r in 0..rows / 2 {
                    let (top, bottom) = v.split_at_mut((rows - 1 - r) * cols);
                    top[r * cols..(r + 1) * cols].swap_with_slice(&mut bottom[..cols]);
                }
            }
            Flip::Horizontal => {
                for row in v.chunks_exact_mut(cols) {
                    row.reverse();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minmax_spans_the_byte_range_and_refuses_constant_slices() {
        assert_eq!(minmax_to_u8(&[-1.0, 0.0, 1.0]).unwrap(), vec![0, 128, 255]);
        assert_eq!(minmax_to_u8(&[2.0; 4]), None);
    }

    #[test]
    fn window_clips_then_scales() {
        assert_eq!(window_to_u8(&[-1000.0, -200.0, 25.0, 250.0, 900.0], -200.0, 250.0), vec![0, 0, 128, 255, 255]);
    }

    #[test]
    fn equalisation_matches_opencv_on_a_small_case() {
        // Values 0 (x4), 10 (x2), 20 (x1), 30 (x1): cdf 4, 6, 7, 8; cdf_min 4.
        let mut p = vec![0, 0, 0, 0, 10, 10, 20, 30];
        equalize_histogram(&mut p);
        assert_eq!(p, vec![0, 0, 0, 0, 128, 128, 191, 255]);
        let mut flat = vec![7u8; 5];
        equalize_histogram(&mut flat);
        assert_eq!(flat, vec![7; 5]);
    }

    #[test]
    fn flips_mirror_rows_or_columns() {
        let base: Vec<u8> = (0..6).collect(); // 3 rows x 2 cols
        let mut v = base.clone();
        Flip::Vertical.apply(3, 2, &mut v);
        assert_eq!(v, vec![4, 5, 2, 3, 0, 1]);
        let mut h = base.clone();
        Flip::Horizontal.apply(3, 2, &mut h);
        assert_eq!(h, vec![1, 0, 3, 2, 5, 4]);
    }
}

//! Where maps peak: the share of normal test maps whose maximum lies in a
//! band along the image border. A detector whose normal maps peak at the
//! border more often than the band's share of the area would suggest has a
//! border artefact (padding, grid misalignment, resampling), and its image
//! score (the map maximum, Eq 15) then measures the artefact rather than
//! the content. `multiad test` reports it for every method.

use serde::{Deserialize, Serialize};

/// The band's width at a 256 px map, scaled with the map (16 px at 256,
/// 4 px at 64): the width issue 18 and `docs/multiad.md` measure.
pub const BAND_PX_AT_256: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BorderMaxima {
    /// Band width in map pixels.
    pub band_px: usize,
    /// The band's share of the map's area (0.234 for 16 px at 256).
    pub band_area_share: f64,
    /// Share of normal test maps whose (first) maximum lies in the band.
    pub normal_share: f64,
    /// The same over anomalous test maps.
    pub anomalous_share: f64,
    /// normal_share / band_area_share: about 1 without an artefact.
    pub normal_ratio: f64,
}

/// The band width for a `size` px map.
pub fn band_px(size: usize) -> usize {
    ((size * BAND_PX_AT_256) as f64 / 256.0).round().max(1.0) as usize
}

/// Distance of pixel `i` of a `size`x`size` map from the nearest border
/// (0 on the outermost row or column).
fn border_distance(i: usize, size: usize) -> usize {
    let (y, x) = (i / size, i % size);
    y.min(x).min(size - 1 - y).min(size - 1 - x)
}

/// The first maximum of a map (NaN never wins).
fn argmax(map: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in map.iter().enumerate() {
        if v > map[best] || map[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Accumulates the maxima of square maps as they are scored.
#[derive(Debug, Clone, Default)]
pub struct BorderCounter {
    size: usize,
    normal: [usize; 2],
    anomalous: [usize; 2],
}

impl BorderCounter {
    pub fn new(size: usize) -> Self {
        Self { size, ..Default::default() }
    }

    /// Counts one map (`size * size` values, row-major).
    pub fn push(&mut self, map: &[f32], anomalous: bool) {
        if map.is_empty() || self.size == 0 {
            return;
        }
        let inside = border_distance(argmax(map), self.size) < band_px(self.size);
        let c = if anomalous { &mut self.anomalous } else { &mut self.normal };
        c[0] += inside as usize;
        c[1] += 1;
    }

    pub fn finish(&self) -> BorderMaxima {
        let b = band_px(self.size);
        let inner = self.size.saturating_sub(2 * b);
        let total = (self.size * self.size).max(1) as f64;
        let area = 1.0 - (inner * inner) as f64 / total;
        let share = |c: [usize; 2]| if c[1] == 0 { 0.0 } else { c[0] as f64 / c[1] as f64 };
        let normal = share(self.normal);
        BorderMaxima {
            band_px: b,
            band_area_share: area,
            normal_share: normal,
            anomalous_share: share(self.anomalous),
            normal_ratio: if area > 0.0 { normal / area } else { 0.0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_of_a_256_map_is_16_px_and_23_percent_of_the_area() {
        let c = BorderCounter::new(256);
        let b = c.finish();
        assert_eq!(b.band_px, 16);
        assert!((b.band_area_share - (1.0 - (224.0f64 * 224.0) / (256.0 * 256.0))).abs() < 1e-12);
        assert!((b.band_area_share - 0.234).abs() < 1e-3);
    }

    #[test]
    fn maxima_are_placed_by_their_distance_to_the_nearest_edge() {
        let size = 64; // band 4 px
        let mut c = BorderCounter::new(size);
        let at = |y: usize, x: usize| {
            let mut m = vec![0f32; size * size];
            m[y * size + x] = 1.0;
            m
        };
        c.push(&at(0, 30), false); // top row: in
        c.push(&at(30, 63), false); // right column: in
        c.push(&at(3, 30), false); // distance 3: in
        c.push(&at(4, 30), false); // distance 4: out
        c.push(&at(32, 32), true); // centre: out
        let b = c.finish();
        assert_eq!(b.band_px, 4);
        assert!((b.normal_share - 0.75).abs() < 1e-12);
        assert_eq!(b.anomalous_share, 0.0);
        assert!((b.normal_ratio - 0.75 / b.band_area_share).abs() < 1e-12);
    }

    #[test]
    fn a_constant_map_counts_its_first_pixel_and_nan_never_wins() {
        let mut c = BorderCounter::new(8);
        c.push(&[0.5; 64], false);
        assert_eq!(c.finish().normal_share, 1.0);
        let mut m = vec![f32::NAN; 64];
        m[27] = 0.1; // (3, 3): distance 3 from every edge, band 1 px at 8
        let mut c = BorderCounter::new(8);
        c.push(&m, false);
        assert_eq!(c.finish().normal_share, 0.0);
    }
}

//! Heat-map colours.

/// The jet colour map for `v` in [0, 1] (blue, cyan, yellow, red).
pub fn jet(v: f32) -> [f32; 3] {
    let v = v.clamp(0.0, 1.0);
    let f = |x: f32| (1.5 - (4.0 * v - x).abs()).clamp(0.0, 1.0);
    [f(3.0), f(2.0), f(1.0)]
}

/// How map values become colours: `(v - lo) / scale` on the jet map.
#[derive(Debug, Clone, Copy)]
pub struct HeatScale {
    pub lo: f32,
    pub scale: f32,
}

impl HeatScale {
    /// A detector's fixed scale when it has one (colours then mean the same
    /// in every picture), else min-max over this map.
    pub fn for_map(map: &[f32], fixed: Option<f32>) -> HeatScale {
        match fixed.filter(|s| *s > 0.0) {
            Some(s) => HeatScale { lo: 0.0, scale: s },
            None => {
                let lo = map.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                HeatScale { lo, scale: (hi - lo).max(f32::EPSILON) }
            }
        }
    }

    pub fn colour(&self, v: f32) -> [f32; 3] {
        jet((v - self.lo) / self.scale)
    }
}

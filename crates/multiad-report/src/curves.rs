//! A run's curves: image- and pixel-level ROC, the PRO curve up to its
//! integration limit, and the histogram of image scores (normal against
//! anomalous, with the threshold).

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::draw::{err, framed_chart, legend, render_both, Figure};

/// A curve to draw: its points and the area quoted in the legend.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub area: f64,
}

/// At most `max` points of a curve, always keeping both ends (pixel-level
/// curves have a point per distinct map value: millions).
pub fn thin(c: &Curve, max: usize) -> Vec<(f64, f64)> {
    let n = c.x.len().min(c.y.len());
    if n <= max {
        return c.x.iter().zip(&c.y).map(|(&x, &y)| (x, y)).collect();
    }
    let step = n as f64 / (max - 1) as f64;
    let mut v: Vec<(f64, f64)> = (0..max - 1).map(|k| ((k as f64 * step) as usize).min(n - 1)).map(|i| (c.x[i], c.y[i])).collect();
    v.push((c.x[n - 1], c.y[n - 1]));
    v
}

/// Curves in [0, x_max] x [0, 1] with a legend (lower right), optionally the
/// chance diagonal: the ROC and PRO charts here and the sweeps' ROC charts.
pub fn line_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: bool,
    title: &str,
    (xd, yd): (&str, &str),
    x_max: f64,
    series: &[(String, Vec<(f64, f64)>)],
    diagonal: bool,
) -> Result<()> {
    let mut chart = framed_chart(root, text, title, (xd, yd), 0f64..x_max, 0f64..1.0f64)?;
    if diagonal {
        chart.draw_series(LineSeries::new(vec![(0.0, 0.0), (x_max, x_max.min(1.0))], BLACK.mix(0.3))).map_err(err)?;
    }
    for (k, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let s = chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(err)?;
        if text {
            s.label(name.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        }
    }
    legend(&mut chart, text && !series.is_empty(), SeriesLabelPosition::LowerRight)
}

/// Image-level ROC, and pixel-level ROC where the test set has masks.
pub fn roc(image: &Curve, pixel: Option<&Curve>) -> Result<Figure> {
    let mut series = vec![(format!("image (AUROC {:.3})", image.area), thin(image, 2000))];
    if let Some(p) = pixel {
        series.push((format!("pixel (AUROC {:.3})", p.area), thin(p, 2000)));
    }
    let labels = ("false positive rate", "true positive rate");
    render_both((600, 600), &|a, t| line_chart(a, t, "ROC", labels, 1.0, &series, true), &|a, t| line_chart(a, t, "ROC", labels, 1.0, &series, true))
}

/// The PRO curve (per-region overlap against the pixel false positive
/// rate) up to `fpr_limit`, the range AUPRO integrates.
pub fn pro(curve: &Curve, fpr_limit: f64) -> Result<Figure> {
    let pts: Vec<(f64, f64)> = thin(curve, 4000).into_iter().filter(|p| p.0 <= fpr_limit).collect();
    let series = vec![(format!("PRO (AUPRO to {fpr_limit} = {:.3})", curve.area), pts)];
    let title = format!("PRO curve (FPR up to {fpr_limit})");
    let labels = ("pixel false positive rate", "per-region overlap");
    render_both((600, 600), &|a, t| line_chart(a, t, &title, labels, fpr_limit, &series, false), &|a, t| {
        line_chart(a, t, &title, labels, fpr_limit, &series, false)
    })
}

fn histogram_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, text: bool, normal: &[f32], anomalous: &[f32], threshold: f32) -> Result<()> {
    let all = normal.iter().chain(anomalous).copied().chain(std::iter::once(threshold));
    let (lo, hi) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = (lo as f64, (hi as f64).max(lo as f64 + 1e-6));
    let bins = 30usize;
    let width = (hi - lo) / bins as f64;
    let count = |xs: &[f32]| {
        let mut c = vec![0usize; bins];
        for &v in xs {
            c[(((v as f64 - lo) / width) as usize).min(bins - 1)] += 1;
        }
        c
    };
    let (cn, ca) = (count(normal), count(anomalous));
    let top = cn.iter().chain(&ca).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut chart = framed_chart(root, text, "Image scores", ("anomaly score", "images"), lo..hi, 0f64..top)?;
    for (k, (name, c)) in [("normal", &cn), ("anomalous", &ca)].into_iter().enumerate() {
        let color = Palette99::pick(k).mix(0.5);
        let rects = c.iter().enumerate().filter(|(_, &n)| n > 0).map(|(i, &n)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], color.filled())
        });
        let s = chart.draw_series(rects).map_err(err)?;
        if text {
            let solid = Palette99::pick(k).to_rgba();
            s.label(format!("{name} ({})", if k == 0 { normal.len() } else { anomalous.len() }))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], solid.filled()));
        }
    }
    let t = threshold as f64;
    let s = chart.draw_series(LineSeries::new(vec![(t, 0.0), (t, top)], BLACK.stroke_width(2))).map_err(err)?;
    if text {
        s.label(format!("threshold {threshold:.3}")).legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.stroke_width(2)));
    }
    legend(&mut chart, text, SeriesLabelPosition::MiddleRight)
}

/// Histograms of the image scores of normal and anomalous test images, with
/// the threshold as a vertical line.
pub fn score_histogram(normal: &[f32], anomalous: &[f32], threshold: f32) -> Result<Figure> {
    render_both((700, 450), &|a, t| histogram_chart(a, t, normal, anomalous, threshold), &|a, t| histogram_chart(a, t, normal, anomalous, threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_both_ends_and_the_count() {
        let c = Curve { x: (0..10_000).map(|i| i as f64).collect(), y: vec![0.5; 10_000], area: 0.0 };
        let t = thin(&c, 100);
        assert_eq!(t.len(), 100);
        assert_eq!((t[0].0, t[99].0), (0.0, 9999.0));
    }

    #[test]
    fn figures_come_out_as_png_and_svg() {
        let c = Curve { x: vec![0.0, 0.2, 1.0], y: vec![0.0, 0.8, 1.0], area: 0.9 };
        let f = roc(&c, Some(&c)).unwrap();
        let img = image::load_from_memory(&f.png).unwrap();
        assert_eq!((img.width(), img.height()), (600, 600));
        assert!(f.svg.contains("<svg") && f.svg.trim_end().ends_with("</svg>"));
        let h = score_histogram(&[0.1, 0.2], &[0.7, 0.9], 0.5).unwrap();
        assert_eq!(image::load_from_memory(&h.png).unwrap().width(), 700);
        pro(&c, 0.3).unwrap();
    }
}

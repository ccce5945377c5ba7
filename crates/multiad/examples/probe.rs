//! Per-layer teacher/student statistics of a trained run, in training and
//! inference mode, and in inference mode the teacher's feature norm and the
//! distance (Eq 13) in the cells within 16 px of the border against those
//! inside (a debugging aid): `cargo run -p multiad --example probe -- RUN_DIR [N]`
use multiad::load_trained;
use multiad_data::BatchLoader;
use multiad_detector::Detector;
use multiad_detector::RunDir;

fn main() -> anyhow::Result<()> {
    let run = RunDir::open(std::path::Path::new(&std::env::args().nth(1).unwrap()))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    // The first N training images (default 8), one batch.
    let n: usize = std::env::args().nth(2).map(|a| a.parse()).transpose()?.unwrap_or(8).min(ds.train.len());
    let b = BatchLoader::new(ds.train[..n].to_vec(), model.image_config(), n).iter().next().unwrap()?;
    let t = model.teacher.forward(&b.images)?;
    for train in [true, false] {
        let s = model.student.forward(&b.images, train)?;
        for (l, (a, c)) in t.iter().zip(&s).enumerate() {
            let d = multiad::loss::cosine_distance_map(a, c)?.mean_all()?.to_scalar::<f32>()?;
            println!(
                "train={train} layer {l}: T mean {:.4} S mean {:.4} S max {:.4} dist {d:.4}",
                a.mean_all()?.to_scalar::<f32>()?,
                c.mean_all()?.to_scalar::<f32>()?,
                c.max_all()?.to_scalar::<f32>()?
            );
            if !train {
                let band = (16 * a.dim(2)?).div_ceil(model.cfg.image_size as usize).max(1);
                let norm = a.sqr()?.sum_keepdim(1)?.sqrt()?;
                let (ne, ni) = edge_and_inside(&norm, band)?;
                let dist = multiad::loss::cosine_distance_map(a, c)?;
                let (de, di) = edge_and_inside(&dist, band)?;
                println!("  border band ({band} cells) / inside: T norm {ne:.4} / {ni:.4}, dist {de:.4} / {di:.4}");
                let sides = side_profile(&dist, band)?;
                println!("  dist by side, outermost cell row/column, then the next ones in: {sides}");
            }
        }
    }
    Ok(())
}

/// Mean of a (b, 1, h, w) map in each of the `depth` outermost rows (top,
/// bottom) and columns (left, right), outermost first: whether one side
/// stands out (TF "SAME" pads after, so bottom and right differ from top and left).
fn side_profile(m: &candle_core::Tensor, depth: usize) -> anyhow::Result<String> {
    let m = m.squeeze(1)?;
    let (h, w) = (m.dim(1)?, m.dim(2)?);
    let row = |y: usize| -> anyhow::Result<f32> { Ok(m.narrow(1, y, 1)?.mean_all()?.to_scalar::<f32>()?) };
    let col = |x: usize| -> anyhow::Result<f32> { Ok(m.narrow(2, x, 1)?.mean_all()?.to_scalar::<f32>()?) };
    let fmt = |v: Vec<f32>| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ");
    let d = depth.min(h / 2).min(w / 2);
    Ok(format!(
        "top {} | bottom {} | left {} | right {}",
        fmt((0..d).map(&row).collect::<anyhow::Result<_>>()?),
        fmt((0..d).map(|k| row(h - 1 - k)).collect::<anyhow::Result<_>>()?),
        fmt((0..d).map(&col).collect::<anyhow::Result<_>>()?),
        fmt((0..d).map(|k| col(w - 1 - k)).collect::<anyhow::Result<_>>()?)
    ))
}

/// Means of a (b, 1, h, w) map over the cells within `band` of the border and over the rest.
fn edge_and_inside(m: &candle_core::Tensor, band: usize) -> anyhow::Result<(f32, f32)> {
    let (h, w) = (m.dim(2)?, m.dim(3)?);
    let v = m.flatten_from(1)?.to_vec2::<f32>()?;
    let (mut e, mut i) = ((0f64, 0usize), (0f64, 0usize));
    for row in &v {
        for (k, &x) in row.iter().enumerate() {
            let (y, xx) = (k / w, k % w);
            let d = y.min(xx).min(h - 1 - y).min(w - 1 - xx);
            let acc = if d < band { &mut e } else { &mut i };
            acc.0 += x as f64;
            acc.1 += 1;
        }
    }
    Ok(((e.0 / e.1.max(1) as f64) as f32, (i.0 / i.1.max(1) as f64) as f32))
}

//! Where a trained run's student fails to imitate its teacher on the test
//! split's defective images, per critical layer: the teacher's and student's
//! feature norms and Eq 13's distance in the cells the mask covers against
//! the unmasked cells with image content (a debugging aid: does a lesion show
//! in the features' direction, which Eq 13 compares, or only in their
//! magnitude, which Eq 6 normalises away?):
//! `cargo run -p multiad --example lesion_probe -- RUN_DIR`
use candle_core::Tensor;
use multiad::load_trained;
use multiad_data::{BatchLoader, Label};
use multiad_detector::{Detector, RunDir};

/// Sums and counts of one quantity in the lesion cells and the other content cells.
#[derive(Default)]
struct InOut([(f64, usize); 2]);

impl InOut {
    fn add(&mut self, lesion: bool, v: f32) {
        let a = &mut self.0[usize::from(!lesion)];
        a.0 += v as f64;
        a.1 += 1;
    }
    fn show(&self) -> String {
        let m = |(s, n): (f64, usize)| s / n.max(1) as f64;
        format!("{:.4} / {:.4}", m(self.0[0]), m(self.0[1]))
    }
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: lesion_probe RUN_DIR"))?;
    let run = RunDir::open(std::path::Path::new(&dir))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    let defective: Vec<_> = ds.test.iter().filter(|s| s.label == Label::Anomalous).cloned().collect();
    let cfg = model.image_config();
    let size = model.cfg.image_size as usize;
    // Per layer: the teacher's norm, the student's norm, Eq 13's distance.
    let mut acc: Vec<[InOut; 3]> = Vec::new();
    for b in BatchLoader::new(defective, cfg, 16).iter() {
        let b = b?;
        let t = model.teacher.forward(&b.images)?;
        let s = model.student.forward(&b.images, false)?;
        let mask = b.mask_tensor(&cfg)?;
        // Grey level in [0, 1] (channel 0 un-normalised): cells of black
        // background are left out of "outside".
        let grey = ((b.images.narrow(1, 0, 1)? * 0.229)? + 0.485)?;
        acc.resize_with(t.len(), Default::default);
        for (l, (a, c)) in t.iter().zip(&s).enumerate() {
            let (h, w) = (a.dim(2)?, a.dim(3)?);
            let pool = |x: &Tensor| -> anyhow::Result<Vec<Vec<f32>>> { Ok(x.avg_pool2d((size / h, size / w))?.flatten_from(1)?.to_vec2()?) };
            let (m, g) = (pool(&mask)?, pool(&grey)?);
            let norms = |x: &Tensor| -> anyhow::Result<Vec<Vec<f32>>> { Ok(x.sqr()?.sum_keepdim(1)?.sqrt()?.flatten_from(1)?.to_vec2()?) };
            let (tn, sn) = (norms(a)?, norms(c)?);
            let d: Vec<Vec<f32>> = multiad::loss::cosine_distance_map(a, c)?.flatten_from(1)?.to_vec2()?;
            for i in 0..b.len() {
                for k in 0..h * w {
                    let lesion = m[i][k] > 0.5;
                    if !lesion && (m[i][k] > 0.0 || g[i][k] < 0.1) {
                        continue;
                    }
                    let [t_norm, s_norm, dist] = &mut acc[l];
                    t_norm.add(lesion, tn[i][k]);
                    s_norm.add(lesion, sn[i][k]);
                    dist.add(lesion, d[i][k]);
                }
            }
        }
    }
    println!("per layer, lesion cells / other cells with content (grey >= 0.1):");
    for (l, [t_norm, s_norm, dist]) in acc.iter().enumerate() {
        println!("M{}: T norm {}, S norm {}, dist {}", l + 1, t_norm.show(), s_norm.show(), dist.show());
    }
    Ok(())
}

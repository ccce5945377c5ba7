//! Per-layer teacher/student statistics of a trained run, in training and
//! inference mode (a debugging aid):
//! `cargo run -p multiad --example probe -- RUN_DIR`
use multiad::load_trained;
use multiad_data::BatchLoader;
use multiad_detector::Detector;
use multiad_detector::RunDir;

fn main() -> anyhow::Result<()> {
    let run = RunDir::open(std::path::Path::new(&std::env::args().nth(1).unwrap()))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    let b = BatchLoader::new(ds.train[..8].to_vec(), model.image_config(), 8).iter().next().unwrap()?;
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
        }
    }
    Ok(())
}

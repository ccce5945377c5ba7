//! Ψ's statistics (each layer map's mean and standard deviation, Eq 14) of a
//! trained run over its training images and over the normal images of its
//! test split, side by side (a debugging aid: does the student's fit to its
//! own training images bias Ψ's layer weights?):
//! `cargo run -p multiad --example psi_stats -- RUN_DIR`
use multiad::anomaly_map::StatsAccumulator;
use multiad::load_trained;
use multiad_data::{BatchLoader, Label, Sample};
use multiad_detector::{Detector, RunDir};

fn main() -> anyhow::Result<()> {
    multiad_nn::set_default_threads();
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: psi_stats RUN_DIR"))?;
    let run = RunDir::open(std::path::Path::new(&dir))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    let normal_test: Vec<Sample> = ds.test.iter().filter(|s| s.label == Label::Normal).cloned().collect();
    let stats = |samples: &[Sample]| -> anyhow::Result<multiad::anomaly_map::FusionStats> {
        let mut acc = StatsAccumulator::default();
        for b in BatchLoader::new(samples.to_vec(), model.image_config(), 16).iter() {
            acc.add(&model.layer_maps(&b?.images)?)?;
        }
        Ok(acc.finish(0.0, false))
    };
    let (tr, te) = (stats(&ds.train)?, stats(&normal_test)?);
    println!("layer,train_mean,train_std,test_normal_mean,test_normal_std,mean_ratio,std_ratio");
    for l in 0..tr.mean.len() {
        println!(
            "M{},{:.4},{:.4},{:.4},{:.4},{:.3},{:.3}",
            l + 1,
            tr.mean[l],
            tr.std[l],
            te.mean[l],
            te.std[l],
            te.mean[l] / tr.mean[l],
            te.std[l] / tr.std[l]
        );
    }
    Ok(())
}

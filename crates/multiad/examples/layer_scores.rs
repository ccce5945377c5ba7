//! Image scores of a trained run from every subset of its critical layers
//! (Ψ-normalised, upsampled, smoothed, max: Eqs 14-15 over the subset), one
//! row per test image, for finding which layers carry the signal (a
//! debugging aid; reading it off the test set chooses nothing):
//! `cargo run -p multiad --example layer_scores -- RUN_DIR > scores.csv`
use multiad::anomaly_map::{fuse, image_scores, FusionStats};
use multiad::load_trained;
use multiad_data::BatchLoader;
use multiad_detector::Detector;
use multiad_detector::RunDir;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: layer_scores RUN_DIR"))?;
    let run = RunDir::open(std::path::Path::new(&dir))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    let size = model.cfg.image_size as usize;
    let stats = model.fusion.clone();
    let subsets: Vec<Vec<usize>> = (1..16u32).map(|m| (0..4).filter(|b| m & (1 << b) != 0).collect()).collect();
    let names: Vec<String> = subsets.iter().map(|s| s.iter().map(|l| format!("M{}", l + 1)).collect::<Vec<_>>().join("+")).collect();
    println!("label,{}", names.join(","));
    let loader = BatchLoader::new(ds.test.clone(), model.image_config(), 16);
    for batch in loader.iter() {
        let batch = batch?;
        let maps = model.layer_maps(&batch.images)?;
        let mut cols = Vec::new();
        for s in &subsets {
            let picked: Vec<_> = s.iter().map(|&l| maps[l].clone()).collect();
            let st =
                stats.as_ref().map(|f| FusionStats { mean: s.iter().map(|&l| f.mean[l]).collect(), std: s.iter().map(|&l| f.std[l]).collect(), ..f.clone() });
            cols.push(image_scores(&fuse(&picked, st.as_ref(), model.cfg.cell_grid(), size, size, model.cfg.inference.sigma)?)?);
        }
        for (i, label) in batch.labels.iter().enumerate() {
            let row: Vec<String> = cols.iter().map(|c| format!("{}", c[i])).collect();
            println!("{},{}", u8::from(*label == multiad_data::Label::Anomalous), row.join(","));
        }
    }
    Ok(())
}

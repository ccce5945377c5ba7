//! Image scores of a trained run from every subset of its critical layers
//! (Ψ-normalised, upsampled, smoothed, max: Eqs 14-15 over the subset), one
//! row per test image, for finding which layers carry the signal (a
//! debugging aid; reading it off the test set chooses nothing):
//! `cargo run -p multiad --example layer_scores -- RUN_DIR [train] > scores.csv`
//! (`train`: the training images instead of the test set).
//! On stderr, each subset's share of normal maxima in the border band (as
//! `multiad test` reports it for the whole map): which layers put them there.
use multiad::anomaly_map::{fuse, image_scores, FusionStats};
use multiad::load_trained;
use multiad_data::BatchLoader;
use multiad_detector::border::BorderCounter;
use multiad_detector::Detector;
use multiad_detector::RunDir;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: layer_scores RUN_DIR [train]"))?;
    let on_train = std::env::args().nth(2).as_deref() == Some("train");
    let run = RunDir::open(std::path::Path::new(&dir))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    let size = model.cfg.image_size as usize;
    let stats = model.fusion.clone();
    let subsets: Vec<Vec<usize>> = (1..16u32).map(|m| (0..4).filter(|b| m & (1 << b) != 0).collect()).collect();
    let names: Vec<String> = subsets.iter().map(|s| s.iter().map(|l| format!("M{}", l + 1)).collect::<Vec<_>>().join("+")).collect();
    println!("label,{}", names.join(","));
    let mut borders = vec![BorderCounter::new(size); subsets.len()];
    let loader = BatchLoader::new(if on_train { ds.train.clone() } else { ds.test.clone() }, model.image_config(), 16);
    for batch in loader.iter() {
        let batch = batch?;
        let maps = model.layer_maps(&batch.images)?;
        let mut cols = Vec::new();
        for s in &subsets {
            let picked: Vec<_> = s.iter().map(|&l| maps[l].clone()).collect();
            let st = stats.as_ref().map(|f| FusionStats {
                mean: s.iter().map(|&l| f.mean[l]).collect(),
                std: s.iter().map(|&l| f.std[l]).collect(),
                position_mean: f.position_mean.as_ref().map(|pm| s.iter().map(|&l| pm[l].clone()).collect()),
                ..f.clone()
            });
            let fused = fuse(&picked, st.as_ref(), model.cfg.cell_grid(), size, size, model.cfg.inference.sigma)?;
            cols.push(image_scores(&fused)?);
            for (map, label) in fused.flatten_from(1)?.to_vec2::<f32>()?.iter().zip(&batch.labels) {
                borders[cols.len() - 1].push(map, *label == multiad_data::Label::Anomalous);
            }
        }
        for (i, label) in batch.labels.iter().enumerate() {
            let row: Vec<String> = cols.iter().map(|c| format!("{}", c[i])).collect();
            println!("{},{}", u8::from(*label == multiad_data::Label::Anomalous), row.join(","));
        }
    }
    for (name, b) in names.iter().zip(&borders) {
        let b = b.finish();
        eprintln!("{name}: normal maxima in the {} px band {:.1}% ({:.2}x its area)", b.band_px, 100.0 * b.normal_share, b.normal_ratio);
    }
    Ok(())
}

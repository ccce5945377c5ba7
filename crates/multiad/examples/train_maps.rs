//! Final anomaly maps (Eqs 13-15, as `multiad test` computes them) of a
//! trained run's *training* images, as a float32 .npy (N x H x W, in the
//! training list's order), for diagnostics that need normal maps not drawn
//! from the test set (`scripts/position_normalised_scores.py --fit-maps`):
//! `cargo run -p multiad --example train_maps -- RUN_DIR OUT.npy`
use multiad::load_trained;
use multiad_data::BatchLoader;
use multiad_detector::evaluate::write_npy;
use multiad_detector::Detector;
use multiad_detector::RunDir;

fn main() -> anyhow::Result<()> {
    multiad_nn::set_default_threads();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, out] = args.as_slice() else {
        anyhow::bail!("usage: train_maps RUN_DIR OUT.npy");
    };
    let run = RunDir::open(std::path::Path::new(dir))?;
    let model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    let size = model.cfg.image_size as usize;
    let loader = BatchLoader::new(ds.train.clone(), model.image_config(), model.cfg.inference.batch_size);
    let mut all: Vec<f32> = Vec::with_capacity(ds.train.len() * size * size);
    for batch in loader.iter() {
        let (maps, _) = model.predict(&batch?.images)?;
        all.extend(maps.flatten_all()?.to_vec1::<f32>()?);
    }
    write_npy(std::path::Path::new(out), &[ds.train.len(), size, size], &all)?;
    eprintln!("{} training maps -> {out}", ds.train.len());
    Ok(())
}

//! Fits Ψ's statistics of a trained run again, with the `inference` settings
//! now in its config.yaml (`inference.psi_centre`, `inference.fit_images`),
//! on its training images, and writes its fusion.json: for measuring Ψ's
//! choices on one trained student without training it again. Run it on a
//! copy of a finished run, then `multiad test --run COPY`:
//! `cargo run -p multiad --example refit_psi -- RUN_DIR`
use multiad::load_trained;
use multiad_detector::{write_atomic, RunDir};

fn main() -> anyhow::Result<()> {
    multiad_nn::set_default_threads();
    let dir = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: refit_psi RUN_DIR"))?;
    let run = RunDir::open(std::path::Path::new(&dir))?;
    let mut model = load_trained(&run)?;
    let ds = run.data()?.load()?;
    multiad::train::fit_fusion(&mut model, &ds.train, &mut std::io::stdout())?;
    write_atomic(&run.path("fusion.json"), serde_json::to_string_pretty(&model.fusion)?.as_bytes())?;
    println!("wrote {}", run.path("fusion.json").display());
    Ok(())
}

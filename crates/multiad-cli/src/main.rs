//! `multiad`: the command-line front end. All logic lives in the library
//! crates; this file only parses arguments and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use multiad_data::synth::{generate, SynthConfig};
use multiad_data::{check_all, load_mvtec, Dataset, DatasetSpec, ImageConfig};

#[derive(Parser)]
#[command(name = "multiad", version, about = "Unsupervised anomaly detection in industrial and medical images (Multi-AD and baselines)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic category in MVTec AD layout (for tests and the demo).
    Synth(SynthArgs),
    /// List a data set's images, masks and defect types; optionally decode every file.
    Inspect(InspectArgs),
}

#[derive(Args)]
struct SynthArgs {
    /// Directory that receives <CATEGORY>/ (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Category name (the directory written under --out).
    #[arg(long, default_value = "synthetic")]
    category: String,
    /// Seed: the same seed writes byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the square images, in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Normal training images.
    #[arg(long, default_value_t = 60)]
    train: usize,
    /// Normal test images.
    #[arg(long, default_value_t = 20)]
    test_good: usize,
    /// Test images for each defect type (hole, scratch, stain).
    #[arg(long, default_value_t = 10)]
    test_per_defect: usize,
}

#[derive(Args)]
struct InspectArgs {
    /// An MVTec AD category directory.
    #[arg(long, conflicts_with = "spec", required_unless_present = "spec")]
    mvtec: Option<PathBuf>,
    /// A data set YAML file (`loader: mvtec|folder`, see experiments/datasets/).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Directory the spec's `path` is relative to.
    #[arg(long, default_value = ".")]
    data_root: PathBuf,
    /// Decode every image and mask (at --size) and report the first bad file.
    #[arg(long)]
    check: bool,
    /// Image size used by --check.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

fn synth(a: SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        category: a.category,
        seed: a.seed,
        size: a.size,
        train: a.train,
        test_good: a.test_good,
        test_per_defect: a.test_per_defect,
    };
    let r = generate(&a.out, &cfg)?;
    println!(
        "wrote {}: {} train, {} good test, {} defective test images (seed {})",
        r.dir.display(),
        r.train,
        r.test_good,
        r.test_defective,
        cfg.seed
    );
    Ok(())
}

fn load_dataset(a: &InspectArgs) -> Result<Dataset> {
    Ok(match (&a.mvtec, &a.spec) {
        (Some(dir), _) => load_mvtec(dir)?,
        (None, Some(spec)) => DatasetSpec::from_yaml_file(spec)?
            .load(&a.data_root)
            .with_context(|| format!("loading the data set of {}", spec.display()))?,
        (None, None) => bail!("give --mvtec DIR or --spec FILE"),
    })
}

fn inspect(a: InspectArgs) -> Result<()> {
    let ds = load_dataset(&a)?;
    let summary = ds.summary();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    if a.check {
        let cfg = ImageConfig::square(a.size);
        check_all(&ds.train, &cfg)?;
        check_all(&ds.test, &cfg)?;
        eprintln!("checked: all {} images and their masks decode", ds.train.len() + ds.test.len());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Synth(a) => synth(a),
        Command::Inspect(a) => inspect(a),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

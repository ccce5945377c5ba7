//! Sweeps as `cargo xtask ablation` runs them (the same library call, with
//! the `multiad` binary of this build): the synthetic suite at smoke scale,
//! its tables and charts; and a sweep killed mid-run, then resumed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use multiad_data::synth::{generate, SynthConfig};
use multiad_sweep::{run_sweep, Plan, SweepArgs, SweepKind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multiad"))
}

/// The synthetic suite's two categories, small.
fn synthetic_data(root: &Path) {
    for (cat, seed) in [("tiles", 1), ("plates", 2)] {
        let cfg = SynthConfig { category: cat.into(), seed, size: 64, train: 12, test_good: 4, test_per_defect: 2 };
        generate(&root.join("synthetic"), &cfg).unwrap();
    }
}

fn args(data_root: &Path, out: &Path, datasets: Option<Vec<String>>, configs: Option<Vec<u8>>, epochs: usize) -> SweepArgs {
    SweepArgs {
        kind: SweepKind::Ablation,
        suite: "synthetic".into(),
        preset: "smoke".into(),
        data_root: data_root.to_path_buf(),
        datasets,
        configs,
        jobs: 2,
        out: Some(out.to_path_buf()),
        epochs: Some(epochs),
        seed: Some(0),
        device: None,
        experiments: repo().join("experiments"),
        mlflow: None,
    }
}

#[test]
fn smoke_ablation_on_the_synthetic_suite_writes_every_table_and_chart() {
    let t = tempfile::tempdir().unwrap();
    synthetic_data(t.path());
    let out = t.path().join("sweep");
    let plan = Plan::new(&args(t.path(), &out, None, None, 2)).unwrap();
    assert_eq!(plan.cells.len(), 16);
    let o = run_sweep(&plan, &bin()).unwrap();
    assert!(o.failed.is_empty(), "{:?}", o.failed);
    assert_eq!((o.ran, o.skipped), (16, 0));

    // The long table: 8 studies x 2 data sets, every metric.
    let long = std::fs::read_to_string(out.join("tables/long.csv")).unwrap();
    let header: Vec<&str> = long.lines().next().unwrap().split(',').collect();
    for col in ["dataset", "study", "se", "d", "mff", "image_auroc", "pixel_auroc", "aupro", "train_seconds", "train_peak_rss_mib", "git_commit"] {
        assert!(header.contains(&col), "{col} missing from {header:?}");
    }
    assert_eq!(long.lines().count(), 1 + 16);
    assert!(std::fs::metadata(out.join("tables/long.parquet")).unwrap().len() > 0);
    let pq = std::fs::read(out.join("tables/long.parquet")).unwrap();
    assert_eq!(&pq[..4], b"PAR1");

    // The Table 4 view: eight studies with their switches, ours beside the paper's.
    let md = std::fs::read_to_string(out.join("tables/table4.md")).unwrap();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| Study")).collect();
    assert_eq!(rows.len(), 8, "{md}");
    assert!(rows[0].starts_with("| 1 | ✓ | ✓ | ✓ |") && rows[7].starts_with("| 8 | - | - | - |"), "{md}");
    assert!(md.contains("industrial paper I_L") && rows[0].contains("99.6"), "{md}");
    let csv = std::fs::read_to_string(out.join("tables/table4.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);

    // Every chart exists in both formats, non-empty and decodable.
    let charts: Vec<PathBuf> = std::fs::read_dir(out.join("charts")).unwrap().map(|e| e.unwrap().path()).collect();
    for stem in
        ["bars_image_auroc", "bars_pixel_auroc", "loss_tiles_study_1", "loss_plates_study_8", "roc_tiles", "roc_plates", "heatmaps_tiles", "heatmaps_plates"]
    {
        for ext in ["png", "svg"] {
            assert!(charts.contains(&out.join("charts").join(format!("{stem}.{ext}"))), "{stem}.{ext}");
        }
    }
    assert_eq!(charts.len(), 2 * (2 + 16 + 2 + 2));
    for c in &charts {
        let bytes = std::fs::read(c).unwrap();
        assert!(!bytes.is_empty(), "{}", c.display());
        if c.extension().unwrap() == "png" {
            let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{}: {e}", c.display()));
            assert!(img.width() > 100 && img.height() > 100);
        } else {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.contains("<svg") && text.trim_end().ends_with("</svg>"), "{}", c.display());
        }
    }

    // Running the same command again trains nothing.
    let again = run_sweep(&plan, &bin()).unwrap();
    assert_eq!((again.ran, again.skipped), (0, 16));
    assert_eq!(std::fs::read_to_string(out.join("tables/table4.md")).unwrap(), md);
}

#[test]
fn smoke_benchmark_compares_all_seven_methods_on_the_synthetic_suite() {
    let t = tempfile::tempdir().unwrap();
    synthetic_data(t.path());
    let out = t.path().join("bench");
    let a = SweepArgs { kind: SweepKind::Benchmark, ..args(t.path(), &out, None, None, 2) };
    let plan = Plan::new(&a).unwrap();
    let methods: Vec<&str> = plan.cells.iter().map(|c| c.method.as_str()).collect();
    let all = ["multiad", "padim", "patchcore", "stfpm", "rd4ad", "simplenet", "mkd"];
    assert_eq!(methods, [all, all].concat());
    let o = run_sweep(&plan, &bin()).unwrap();
    assert!(o.failed.is_empty(), "{:?}", o.failed);
    assert_eq!(o.ran, 14);
    // Each cell is a run of its own method.
    for c in &plan.cells {
        let cfg = std::fs::read_to_string(c.run_dir().join("config.yaml")).unwrap();
        assert!(cfg.contains(&format!("method: {}", c.method)), "{}: {cfg}", c.label());
        assert!(c.run_dir().join("metrics.json").is_file());
    }
    // The Table 2/3 view: a row per data set plus the average, two columns per method.
    let md = std::fs::read_to_string(out.join("tables/benchmark.md")).unwrap();
    for label in ["Multi-AD I_L", "PaDiM I_L", "PatchCore P_L", "STFPM I_L", "RD4AD P_L", "SimpleNet I_L", "MKD P_L", "tiles", "plates", "Average"] {
        assert!(md.contains(label), "{label} missing from\n{md}");
    }
    let long = std::fs::read_to_string(out.join("tables/long.csv")).unwrap();
    assert_eq!(long.lines().count(), 1 + 14);
    // Loss curves only for the methods that train in epochs.
    let charts: Vec<String> = std::fs::read_dir(out.join("charts")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(charts.iter().any(|c| c.starts_with("loss_") && c.contains("multiad")), "{charts:?}");
    assert!(charts.iter().any(|c| c.starts_with("loss_") && c.contains("stfpm")), "{charts:?}");
    assert!(!charts.iter().any(|c| c.starts_with("loss_") && c.contains("padim")), "{charts:?}");
    // A method the registry does not know is refused before anything runs.
    let suite = t.path().join("bad.yaml");
    std::fs::write(&suite, "name: bad\nmethods: [multiad, fastflow]\ndatasets:\n  - loader: mvtec\n    path: synthetic/tiles\n").unwrap();
    let e = Plan::new(&SweepArgs { suite: suite.to_string_lossy().into_owned(), ..a.clone() }).err().unwrap().to_string();
    assert!(e.contains("fastflow") && e.contains("patchcore"), "{e}");
}

/// The child half of the kill test: runs a sweep when asked to by the parent.
#[test]
fn sweep_child_process() {
    let (Some(root), Some(out)) = (std::env::var_os("SWEEP_CHILD_DATA"), std::env::var_os("SWEEP_CHILD_OUT")) else { return };
    let plan = Plan::new(&kill_args(Path::new(&root), Path::new(&out))).unwrap();
    run_sweep(&plan, &bin()).unwrap();
}

fn kill_args(root: &Path, out: &Path) -> SweepArgs {
    SweepArgs { jobs: 1, ..args(root, out, Some(vec!["tiles".into()]), Some(vec![1, 4]), 6) }
}

/// The metric columns of the long table (times and memory differ run to run).
fn metric_columns(out: &Path) -> Vec<String> {
    multiad_sweep::tables::metric_rows(out).unwrap()
}

#[test]
fn a_killed_sweep_resumes_and_matches_an_uninterrupted_one() {
    use std::os::unix::process::CommandExt;
    let t = tempfile::tempdir().unwrap();
    synthetic_data(t.path());
    let out = t.path().join("killed");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sweep_child_process", "--nocapture"])
        .env("SWEEP_CHILD_DATA", t.path())
        .env("SWEEP_CHILD_OUT", &out)
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the whole process group once the first cell is finished and the
    // second has a checkpoint but no trained model.
    let first = out.join("cells/tiles/study-1");
    let second = out.join("cells/tiles/study-4/run");
    let t0 = Instant::now();
    let mut killed_mid_training = false;
    loop {
        let first_done = std::fs::read_to_string(first.join("cell.json")).is_ok_and(|s| s.contains("\"done\""));
        if first_done && second.join("checkpoint.safetensors").is_file() {
            killed_mid_training = !second.join("training.json").is_file();
            break;
        }
        if child.try_wait().unwrap().is_some() || t0.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", child.id())]).status().unwrap();
    assert!(killed.success(), "kill failed");
    let _ = child.wait();
    assert!(killed_mid_training, "the sweep finished or stalled before it could be killed mid-training");
    let first_metrics = std::fs::metadata(first.join("run/metrics.json")).unwrap().modified().unwrap();

    // The same command again: the finished cell is skipped, the killed one resumes.
    let plan = Plan::new(&kill_args(t.path(), &out)).unwrap();
    let o = run_sweep(&plan, &bin()).unwrap();
    assert!(o.failed.is_empty(), "{:?}", o.failed);
    assert_eq!((o.skipped, o.ran), (1, 1));
    assert_eq!(std::fs::metadata(first.join("run/metrics.json")).unwrap().modified().unwrap(), first_metrics);
    let log = std::fs::read_to_string(out.join("cells/tiles/study-4/train.log")).unwrap();
    assert!(log.contains("resuming"), "{log}");

    // Same tables as a sweep that was never interrupted.
    let clean = t.path().join("clean");
    let plan = Plan::new(&kill_args(t.path(), &clean)).unwrap();
    run_sweep(&plan, &bin()).unwrap();
    assert_eq!(metric_columns(&out), metric_columns(&clean));
    assert_eq!(std::fs::read_to_string(out.join("tables/table4.md")).unwrap(), std::fs::read_to_string(clean.join("tables/table4.md")).unwrap());
}

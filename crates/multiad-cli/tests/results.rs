//! What a run leaves for people to look at: TensorBoard events (read back
//! with the `tensorboard` package's reader where it is installed, and with
//! ours always), panels at the image's resolution, curves.

use std::path::{Path, PathBuf};
use std::process::Command;

use multiad_tensorboard::{event_files, read_events, Entry, Record};

fn multiad(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_multiad")).args(args).output().expect("run multiad");
    assert!(out.status.success(), "multiad {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Trains the preset `config` (a path in the repository, with `extra`
/// arguments) into `dir/run` on a synthetic 64 px category of `train` normal
/// training images and `test_good` normal and `per_defect` defective test
/// images per type; returns the run directory.
fn train_on_synthetic(dir: &Path, [train, test_good, per_defect]: [usize; 3], config: &str, extra: &[&str]) -> PathBuf {
    let data = dir.join("data");
    let counts = [train, test_good, per_defect].map(|n| n.to_string());
    multiad(&[
        "synth",
        "--out",
        s(&data),
        "--category",
        "demo",
        "--seed",
        "0",
        "--size",
        "64",
        "--train",
        &counts[0],
        "--test-good",
        &counts[1],
        "--test-per-defect",
        &counts[2],
    ]);
    let run = dir.join("run");
    let cfg = repo().join(config);
    let category = data.join("demo");
    let mut args = vec!["train", "--config", s(&cfg), "--data", s(&category), "--out", s(&run)];
    args.extend_from_slice(extra);
    multiad(&args);
    run
}

/// Every summary value of every event file of a run directory.
fn events(run: &Path) -> Vec<Record> {
    event_files(run).unwrap().iter().flat_map(|f| read_events(f).unwrap()).collect()
}

fn scalars(ev: &[Record], tag: &str) -> Vec<(i64, f32)> {
    ev.iter()
        .filter(|r| r.tag == tag)
        .filter_map(|r| match r.entry {
            Entry::Scalar(v) => Some((r.step, v)),
            _ => None,
        })
        .collect()
}

/// `tensorboard`'s own reader over a run directory: tag -> number of values.
fn tensorboard_reader(run: &Path) -> Option<serde_json::Value> {
    let code = r#"
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
a = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0})
a.Reload()
t = a.Tags()
out = {"scalars": {k: [[e.step, e.value] for e in a.Scalars(k)] for k in t["scalars"]},
       "images": {k: [[e.width, e.height] for e in a.Images(k)] for k in t["images"]},
       "text": {k: [e.tensor_proto.string_val[0].decode() for e in a.Tensors(k)] for k in t["tensors"]}}
print(json.dumps(out))
"#;
    let out = Command::new("python3").args(["-c", code, s(run)]).output().ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            return None;
        }
        panic!("tensorboard's reader failed on {}: {err}", run.display());
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn a_run_writes_tensorboard_events_panels_and_curves() {
    let t = tempfile::tempdir().unwrap();
    let run = train_on_synthetic(t.path(), [12, 4, 2], "experiments/smoke.yaml", &["--epochs", "3"]);
    let data = t.path().join("data");
    multiad(&["test", "--run", s(&run), "--save-images"]);
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();

    // Our reader: losses per step and per epoch, the config, test metrics, panels.
    let ev = events(&run);
    let history: Vec<serde_json::Value> =
        std::fs::read_to_string(run.join("history.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let per_epoch = scalars(&ev, "epoch/loss_g");
    assert_eq!(per_epoch.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    for (p, h) in per_epoch.iter().zip(&history) {
        assert_eq!(p.1, h["loss_g"].as_f64().unwrap() as f32);
    }
    // 12 images, batch 8, drop_last: one step per epoch.
    assert_eq!(scalars(&ev, "step/loss_g").iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(scalars(&ev, "step/loss_d").len(), 3, "the smoke preset trains the discriminator");
    assert_eq!(scalars(&ev, "test/image_auroc"), vec![(3, metrics["image_auroc"].as_f64().unwrap() as f32)]);
    assert_eq!(scalars(&ev, "test/aupro"), vec![(3, metrics["aupro"].as_f64().unwrap() as f32)]);
    let config = ev.iter().find(|r| r.tag == "config").expect("config text");
    assert!(matches!(&config.entry, Entry::Text(t) if t.contains("method: multiad") && t.contains("epochs: 3")), "{:?}", config.entry);
    let panels: Vec<&Record> = ev.iter().filter(|r| r.tag.starts_with("panels/")).collect();
    assert_eq!(panels.len(), 4, "two normal and two anomalous examples");
    for p in &panels {
        let Entry::Image(w, h, png) = &p.entry else { panic!("{} is not an image", p.tag) };
        let img = image::load_from_memory(png).unwrap();
        assert_eq!((img.width(), img.height()), (*w, *h));
    }

    // TensorBoard's own reader sees the same.
    match tensorboard_reader(&run) {
        None => println!("SKIPPED: the tensorboard Python package is not installed; events checked with our reader only"),
        Some(tb) => {
            let epoch = tb["scalars"]["epoch/loss_g"].as_array().unwrap();
            assert_eq!(epoch.len(), 3, "{tb}");
            assert_eq!(epoch[2][1].as_f64().unwrap() as f32, per_epoch[2].1);
            assert_eq!(tb["scalars"]["test/image_auroc"][0][1].as_f64().unwrap() as f32, metrics["image_auroc"].as_f64().unwrap() as f32);
            assert_eq!(tb["images"].as_object().unwrap().len(), 4, "{tb}");
            assert!(tb["text"]["config"][0].as_str().unwrap().contains("method: multiad"), "{tb}");
        }
    }

    // A panel per test image at the image's resolution: image | ground truth |
    // heat map | predicted mask, 8 px apart, under a title strip when a font
    // exists. The ground-truth tile is the mask, exactly.
    let images = run.join("images");
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 4 + 3 * 2);
    for (name, mask) in [("hole_000", Some(data.join("demo/ground_truth/hole/000_mask.png"))), ("002", None)] {
        let p = image::open(images.join(format!("{name}.png"))).unwrap().to_rgb8();
        assert_eq!(p.width(), 4 * 64 + 3 * 8, "{name}");
        let top = p.height() - 64;
        assert!(top == 0 || top == 28, "{name}: height {}", p.height());
        let gt_pixel = |x: u32, y: u32| p.get_pixel(64 + 8 + x, top + y).0;
        match mask {
            Some(m) => {
                let m = image::open(m).unwrap().to_luma8();
                assert!(m.pixels().any(|v| v.0[0] > 127));
                for (x, y, v) in m.enumerate_pixels() {
                    let want = if v.0[0] > 127 { [255; 3] } else { [0; 3] };
                    assert_eq!(gt_pixel(x, y), want, "{name} at ({x}, {y})");
                }
            }
            None => assert!((0..64).all(|y| (0..64).all(|x| gt_pixel(x, y) == [0; 3])), "{name}: a normal image's mask is black"),
        }
    }
    for stem in ["roc", "pro", "score_histogram"] {
        let png = image::open(run.join(format!("curves/{stem}.png"))).unwrap();
        assert!(png.width() >= 600 && png.height() >= 450, "{stem}");
        let svg = std::fs::read_to_string(run.join(format!("curves/{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{stem}");
    }

    // predict: the same panel without a ground-truth column; the contour at
    // the tested run's threshold, or at --threshold.
    let out = t.path().join("pred");
    let img = data.join("demo/test/hole/000.png");
    multiad(&["predict", "--run", s(&run), "--out", s(&out), s(&img)]);
    let p = image::open(out.join("000_panel.png")).unwrap();
    assert_eq!(p.width(), 3 * 64 + 2 * 8);
    multiad(&["predict", "--run", s(&run), "--out", s(&t.path().join("pred2")), "--threshold", "1e9", s(&img)]);
    let none = image::open(t.path().join("pred2/000_panel.png")).unwrap().to_rgb8();
    let top = none.height() - 64;
    let red = (0..64).flat_map(|y| (0..64).map(move |x| (x, y))).filter(|&(x, y)| none.get_pixel(2 * 72 + x, top + y).0 == [255, 0, 0]).count();
    assert_eq!(red, 0, "no pixel reaches a threshold of 1e9");
}

#[test]
fn a_method_without_epochs_still_writes_its_config_and_test_events() {
    let t = tempfile::tempdir().unwrap();
    let run = train_on_synthetic(t.path(), [8, 2, 1], "experiments/methods/padim/smoke.yaml", &[]);
    multiad(&["test", "--run", s(&run)]);
    let ev = events(&run);
    assert!(ev.iter().any(|r| r.tag == "config" && matches!(&r.entry, Entry::Text(t) if t.contains("method: padim"))));
    assert_eq!(scalars(&ev, "test/image_auroc").len(), 1);
    assert!(scalars(&ev, "step/loss").is_empty());
    assert!(!run.join("images").exists(), "panels only with --save-images");
}

//! BMAD's medical layout: the real brain MRI set in `../shared` (skipped when
//! absent) and the layout's variants and errors on files written here.

mod common;

use std::path::Path;

use multiad_data::{load_bmad, load_sample, BmadSplit, DatasetSpec, ImageConfig, Label};

#[test]
fn brain_lgg_bmad_has_its_documented_counts() {
    let Some(shared) = common::shared_dir() else { return };
    let spec = DatasetSpec::from_yaml_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/datasets/brain_lgg_bmad.yaml")).unwrap();
    let data = shared.join("data");
    let test = spec.load(&data).unwrap();
    let root = data.join("brain_lgg_bmad");
    let valid = load_bmad(&root, BmadSplit::Valid).unwrap();
    for (ds, good, ungood) in [(&test, 338, 207), (&valid, 217, 95)] {
        let s = ds.summary();
        assert_eq!((s.train, s.test_normal, s.test_anomalous), (457, good, ungood));
        assert!(ds.test.iter().all(|t| t.mask.is_some() == (t.label == Label::Anomalous)));
    }
    // A mask has its image's name; tumour masks are non-empty at 64 x 64.
    let cfg = ImageConfig::square(64);
    for t in test.test.iter().filter(|s| s.label == Label::Anomalous).step_by(50) {
        assert_eq!(t.mask.as_ref().unwrap().file_name(), t.image.file_name());
        assert!(load_sample(t, &cfg).unwrap().mask.contains(&1), "{}", t.image.display());
    }
    // The directory alone is recognised as BMAD.
    assert!(matches!(DatasetSpec::for_directory(&root), DatasetSpec::Bmad(_)));
}

fn png(path: &Path, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([v])).save(path).unwrap();
}

#[test]
fn layout_variants_and_errors() {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().join("set");
    // Variants: train/good/img, test/good (no img/), anomaly_mask/.
    png(&r.join("train/good/img/a.png"), 10);
    png(&r.join("train/good/img/b.png"), 10);
    png(&r.join("test/good/n1.png"), 10);
    png(&r.join("test/Ungood/img/x.png"), 10);
    png(&r.join("test/Ungood/anomaly_mask/x.png"), 255);
    let ds = load_bmad(&r, BmadSplit::Test).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (2, 2));
    assert_eq!(ds.test[1].defect_type, "Ungood");
    assert!(ds.test[1].mask.as_ref().unwrap().ends_with("test/Ungood/anomaly_mask/x.png"));

    let err = |split| load_bmad(&r, split).unwrap_err().to_string();
    assert!(err(BmadSplit::Valid).contains("missing valid/"), "{}", err(BmadSplit::Valid));
    // An anomalous image without a mask names the image and the expected mask.
    png(&r.join("test/Ungood/img/y.png"), 10);
    let e = err(BmadSplit::Test);
    assert!(e.contains("y.png") && e.contains("anomalous image has no mask") && e.contains("anomaly_mask/y.png"), "{e}");
    std::fs::remove_file(r.join("test/Ungood/img/y.png")).unwrap();
    // A mask without its image.
    png(&r.join("test/Ungood/anomaly_mask/z.png"), 255);
    assert!(err(BmadSplit::Test).contains("mask has no image"), "{}", err(BmadSplit::Test));
    std::fs::remove_file(r.join("test/Ungood/anomaly_mask/z.png")).unwrap();
    // No training images.
    std::fs::remove_dir_all(r.join("train")).unwrap();
    assert!(err(BmadSplit::Test).contains("train/good"), "{}", err(BmadSplit::Test));
}

/// The suite files in experiments/ parse, and a missing data set is reported
/// with its datasets/ page before anything runs.
#[test]
fn suites_parse_and_report_missing_data_sets() {
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/suites");
    let medical = multiad_data::Suite::from_yaml_file(&exp.join("medical.yaml")).unwrap();
    let names: Vec<String> = medical.datasets.iter().map(|d| d.spec.name()).collect();
    assert_eq!(names, vec!["brain", "liver", "resc"]);
    let industrial = multiad_data::Suite::from_yaml_file(&exp.join("industrial.yaml")).unwrap();
    assert_eq!(industrial.datasets.len(), 15);
    assert!(industrial.datasets.iter().any(|d| d.spec.name() == "metal_nut"));
    let shared = multiad_data::Suite::from_yaml_file(&exp.join("shared.yaml")).unwrap();
    assert!(matches!(shared.datasets[1].spec, DatasetSpec::Bmad(_)));

    let empty = tempfile::tempdir().unwrap();
    let err = medical.check_present(empty.path()).unwrap_err().to_string();
    assert!(err.contains("3 of 3 data sets missing"), "{err}");
    assert!(err.contains("liver:") && err.contains("see datasets/liver.md"), "{err}");
    let mut one = industrial.clone();
    one.select(&["screw".into()]).unwrap();
    assert_eq!(one.datasets.len(), 1);
    assert!(one.select(&["screws".into()]).unwrap_err().to_string().contains("has no data set \"screws\""));

    // Unknown keys inside an entry name the entry.
    let bad = empty.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\ndatasets:\n  - loader: bmad\n    path: a\n    splitt: test\n").unwrap();
    let e = multiad_data::Suite::from_yaml_file(&bad).unwrap_err().to_string();
    assert!(e.contains("data set 1 of the suite") && e.contains("splitt"), "{e}");
}

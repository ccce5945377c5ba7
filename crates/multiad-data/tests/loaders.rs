//! The MVTec and folder loaders on synthetic data, and the folder loader on
//! the real magnetic-tile set from `../shared` (skipped when absent).

mod common;

use std::path::Path;

use multiad_data::synth::{generate, SynthConfig};
use multiad_data::{check_all, load_mvtec, load_sample, BatchLoader, DatasetSpec, FolderSpec, ImageConfig, Label};

fn small(category: &str, seed: u64) -> SynthConfig {
    SynthConfig { category: category.into(), seed, size: 64, train: 6, test_good: 3, test_per_defect: 2 }
}

#[test]
fn synthetic_category_loads_as_mvtec() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), &small("tiles", 3)).unwrap();
    let ds = load_mvtec(&tmp.path().join("tiles")).unwrap();
    assert_eq!(ds.name, "tiles");
    assert_eq!(ds.train.len(), 6);
    assert_eq!(ds.test.len(), 3 + 3 * 2);
    let s = ds.summary();
    assert_eq!((s.test_normal, s.test_anomalous), (3, 6));
    let types: Vec<_> = s.test_by_defect.iter().map(|d| (d.defect_type.as_str(), d.images, d.masks)).collect();
    assert_eq!(types, vec![("good", 3, 0), ("hole", 2, 2), ("scratch", 2, 2), ("stain", 2, 2)]);
    for t in &ds.test {
        assert_eq!(t.label == Label::Anomalous, t.mask.is_some());
        if let Some(m) = &t.mask {
            let stem = t.image.file_stem().unwrap().to_string_lossy().to_string();
            assert_eq!(m.file_name().unwrap().to_string_lossy(), format!("{stem}_mask.png"));
            assert!(m.parent().unwrap().ends_with(Path::new("ground_truth").join(&t.defect_type)));
        }
    }
    // Every defect mask is non-empty; good images get all-zero masks.
    let cfg = ImageConfig::square(32);
    for t in &ds.test {
        let l = load_sample(t, &cfg).unwrap();
        let area: usize = l.mask.iter().map(|&m| m as usize).sum();
        assert!(l.mask.iter().all(|&m| m <= 1));
        assert_eq!(area > 0, t.label == Label::Anomalous, "{}", t.image.display());
    }
}

#[test]
fn synthesis_is_deterministic_by_seed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    generate(a.path(), &small("c", 5)).unwrap();
    generate(b.path(), &small("c", 5)).unwrap();
    let c = tempfile::tempdir().unwrap();
    generate(c.path(), &small("c", 6)).unwrap();
    let read = |d: &Path, f: &str| std::fs::read(d.join("c").join(f)).unwrap();
    for f in ["train/good/000.png", "test/scratch/001.png", "ground_truth/stain/000_mask.png"] {
        assert_eq!(read(a.path(), f), read(b.path(), f), "{f}");
        assert_ne!(read(a.path(), f), read(c.path(), f), "{f}");
    }
    // Never overwritten.
    let err = generate(a.path(), &small("c", 9)).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn batches_have_the_configured_shape_and_order() {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), &small("b", 1)).unwrap();
    let ds = load_mvtec(&tmp.path().join("b")).unwrap();
    let cfg = ImageConfig { height: 32, width: 48, ..ImageConfig::default() };
    let loader = BatchLoader::new(ds.test.clone(), cfg, 4);
    let batches: Vec<_> = loader.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].images.dims(), &[4, 3, 32, 48]);
    assert_eq!(batches[2].images.dims(), &[1, 3, 32, 48]);
    assert_eq!(batches[0].masks.len(), 4 * 32 * 48);
    let idx: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(idx, (0..9).collect::<Vec<_>>());
    // ImageNet normalisation puts values around zero, within the range of (0-mean)/std..(1-mean)/std.
    let v: Vec<f32> = batches[0].images.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (-2.2..=2.7).contains(x)));

    // A shuffled epoch visits every sample once, in an order fixed by the seed.
    let order = |seed| -> Vec<usize> { BatchLoader::new(ds.test.clone(), cfg, 4).shuffled(seed).iter().flat_map(|b| b.unwrap().indices).collect() };
    let (o1, o2, o3) = (order(7), order(7), order(8));
    assert_eq!(o1, o2);
    assert_ne!(o1, o3);
    let mut sorted = o1.clone();
    sorted.sort();
    assert_eq!(sorted, (0..9).collect::<Vec<_>>());
    assert_eq!(BatchLoader::new(ds.test.clone(), cfg, 4).drop_last(true).num_batches(), 2);
}

#[test]
fn folder_layout_with_separate_mask_dir_and_suffix() {
    // Rebuild the synthetic category as a user's folder layout:
    // ok/*.png, ng/*.png, masks/*_gt.png.
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path(), &small("s", 2)).unwrap();
    let root = tmp.path().join("mine");
    for d in ["ok", "ng", "masks"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let src = tmp.path().join("s");
    for (k, f) in std::fs::read_dir(src.join("train/good")).unwrap().enumerate() {
        let f = f.unwrap().path();
        std::fs::copy(&f, root.join("ok").join(format!("n{k}.png"))).unwrap();
    }
    for (i, d) in ["hole", "scratch"].iter().enumerate() {
        for j in 0..2 {
            std::fs::copy(src.join(format!("test/{d}/{j:03}.png")), root.join(format!("ng/a{i}{j}.png"))).unwrap();
            std::fs::copy(src.join(format!("ground_truth/{d}/{j:03}_mask.png")), root.join(format!("masks/a{i}{j}_gt.png"))).unwrap();
        }
    }
    let yaml =
        "loader: folder\npath: mine\nnormal: [ok]\nabnormal:\n  - dir: ng\n    mask_dir: masks\nmasks:\n  suffix: _gt\ntest_fraction: 0.5\nsplit_seed: 4\n";
    std::fs::write(tmp.path().join("spec.yaml"), yaml).unwrap();
    let spec = DatasetSpec::from_yaml_file(&tmp.path().join("spec.yaml")).unwrap();
    let ds = spec.load(tmp.path()).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (3, 3 + 4));
    assert!(ds.test.iter().filter(|s| s.label == Label::Anomalous).all(|s| s.mask.is_some() && s.defect_type == "ng"));
    // The split is fixed by the seed and disjoint.
    let again = spec.load(tmp.path()).unwrap();
    assert_eq!(ds.train, again.train);
    assert!(ds.train.iter().all(|t| !ds.test.iter().any(|s| s.image == t.image)));
    check_all(&ds.test, &ImageConfig::square(32)).unwrap();

    // A mask without its image is reported by name.
    std::fs::copy(root.join("masks/a00_gt.png"), root.join("masks/zz_gt.png")).unwrap();
    let err = spec.load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("zz_gt.png") && err.contains("no image"), "{err}");

    // Unknown keys in the spec are refused with their name.
    std::fs::write(tmp.path().join("bad.yaml"), format!("{yaml}normal_dirz: [x]\n")).unwrap();
    let err = DatasetSpec::from_yaml_file(&tmp.path().join("bad.yaml")).unwrap_err().to_string();
    assert!(err.contains("normal_dirz"), "{err}");
}

#[test]
fn magnetic_tile_loads_as_it_is() {
    let Some(shared) = common::shared_dir() else { return };
    let spec = DatasetSpec::from_yaml_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/datasets/magnetic_tile.yaml")).unwrap();
    assert_eq!(spec, DatasetSpec::Folder(FolderSpec::magnetic_tile("magnetic_tile")));
    let ds = spec.load(&shared.join("data")).unwrap();
    let s = ds.summary();
    assert_eq!(s.train + s.test_normal, 952);
    assert_eq!(s.test_normal, 190);
    let counts: Vec<_> = s.test_by_defect.iter().map(|d| (d.defect_type.as_str(), d.images, d.masks)).collect();
    assert_eq!(
        counts,
        vec![("MT_Blowhole", 115, 115), ("MT_Break", 85, 85), ("MT_Crack", 57, 57), ("MT_Fray", 32, 32), ("MT_Uneven", 103, 103), ("good", 190, 0)]
    );
    // Images are grayscale JPEGs of varying size; masks threshold at > 127.
    let cfg = ImageConfig::square(64);
    for s in ds.test.iter().filter(|s| s.label == Label::Anomalous).step_by(40) {
        let l = load_sample(s, &cfg).unwrap();
        assert!(l.mask.contains(&1), "{} has an empty mask", s.image.display());
        assert_eq!(l.image.len(), 3 * 64 * 64);
    }
}

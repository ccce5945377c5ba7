//! Volume-to-slice preparation: BraTS on the real volumes in `../shared`
//! (skipped when absent), checked against the volumes themselves and against
//! counts computed independently with NumPy; the liver pipeline on synthetic
//! CT volumes written by the test.

use std::path::{Path, PathBuf};

use multiad_data::{load_bmad, BmadSplit, Label};
use multiad_nifti::{DataType, WriteSpec};
use multiad_prep::brats::{self, BratsOptions};
use multiad_prep::liver::{self, LiverOptions};
use multiad_prep::{Flip, SplitCounts};

fn shared() -> Option<PathBuf> {
    multiad_data::testing::shared_dir(env!("CARGO_MANIFEST_DIR"))
}

fn gray(path: &Path) -> (u32, u32, Vec<u8>) {
    let img = image::open(path).unwrap().to_luma8();
    (img.width(), img.height(), img.into_raw())
}

fn counts(patients: usize, good: usize, ungood: usize) -> SplitCounts {
    SplitCounts { patients, good, ungood }
}

fn shared_opts(raw: &Path, out: &Path) -> BratsOptions {
    BratsOptions { flair_suffix: "Flair_subtrMeanDivStd.nii.gz".into(), seg_suffix: "OTMultiClass.nii.gz".into(), ..BratsOptions::new(raw, out) }
}

#[test]
fn brats_prep_on_real_volumes_matches_the_volumes() {
    let Some(shared) = shared() else { return };
    let raw = shared.join("data/brats_volumes");
    let tmp = tempfile::tempdir().unwrap();

    // BMAD's slices 60-99: on these BraTS 2013 cases nearly every one of them
    // shows tumour, so training patients contribute nothing.
    let out = tmp.path().join("bmad60");
    let r = brats::prepare(&shared_opts(&raw, &out), &mut |_| {}).unwrap();
    // Expected counts from NumPy on the same volumes (see docs/data.md).
    assert_eq!((r.train.clone(), r.valid.clone(), r.test.clone()), (counts(2, 0, 0), counts(2, 0, 80), counts(2, 7, 73)));
    assert_eq!(r.skipped.get("abnormal slice of a training patient"), Some(&80));

    // A wider range gives every split normal slices.
    let out = tmp.path().join("wide");
    let opts = BratsOptions { first_slice: 30, last_slice: 129, ..shared_opts(&raw, &out) };
    let r = brats::prepare(&opts, &mut |_| {}).unwrap();
    assert_eq!((r.train.clone(), r.valid.clone(), r.test.clone()), (counts(2, 58, 0), counts(2, 58, 142), counts(2, 66, 134)));
    assert_eq!(r.patients.get("brats_2013_pat0003_1").map(String::as_str), Some("valid"));

    // The loader reads what prep wrote.
    let ds = load_bmad(&out, BmadSplit::Test).unwrap();
    assert_eq!(ds.train.len(), 58);
    assert_eq!(ds.test.iter().filter(|s| s.label == Label::Anomalous).count(), 134);
    let valid = load_bmad(&out, BmadSplit::Valid).unwrap();
    assert_eq!(valid.test.len(), 200);

    // Every slice against its volume: mask = segmentation != 0, label from
    // the mask, image = min-max of the FLAIR slice (rows = first voxel axis).
    for case in ["test/brats_2013_pat0002_1", "train/brats_2013_pat0005_1"] {
        let dir = raw.join(case);
        let id = dir.file_name().unwrap().to_string_lossy().to_string();
        let flair = multiad_nifti::read(&dir.join("Flair_subtrMeanDivStd.nii.gz")).unwrap();
        let seg = multiad_nifti::read(&dir.join("OTMultiClass.nii.gz")).unwrap();
        let split = if case.starts_with("test") { "test" } else { "train" };
        for k in 30..=129usize {
            let at = |v: &multiad_nifti::Volume, i: usize, j: usize| v.data[i + 240 * (j + 240 * k)];
            let abnormal = (0..240).any(|i| (0..240).any(|j| at(&seg, i, j) != 0.0));
            let name = format!("{id}_{k:03}.png");
            let (img_path, mask_path) = match (split, abnormal) {
                ("train", true) => {
                    assert!(!out.join("train/good").join(&name).exists());
                    continue;
                }
                ("train", false) => (out.join("train/good").join(&name), None),
                (_, false) => (out.join("test/good/img").join(&name), None),
                (_, true) => (out.join("test/Ungood/img").join(&name), Some(out.join("test/Ungood/label").join(&name))),
            };
            let (w, h, px) = gray(&img_path);
            assert_eq!((w, h), (240, 240));
            let vals: Vec<f32> = (0..240).flat_map(|i| (0..240).map(move |j| (i, j))).map(|(i, j)| at(&flair, i, j)).collect();
            let (lo, hi) = vals.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            for (n, &v) in vals.iter().enumerate().step_by(97) {
                let want = ((v - lo) * 255.0 / (hi - lo)).round() as i32;
                assert!((px[n] as i32 - want).abs() <= 1, "{name} pixel {n}: {} vs {want}", px[n]);
            }
            if let Some(m) = mask_path {
                let (_, _, mask) = gray(&m);
                for i in 0..240 {
                    for j in 0..240 {
                        assert_eq!(mask[i * 240 + j] == 255, at(&seg, i, j) != 0.0, "{name} ({i}, {j})");
                    }
                }
            }
        }
    }

    // Deterministic, and never overwrites.
    let again = tmp.path().join("wide2");
    brats::prepare(&BratsOptions { out: again.clone(), ..opts.clone() }, &mut |_| {}).unwrap();
    for rel in ["train/good/brats_2013_pat0005_1_030.png", "test/Ungood/label/brats_2013_pat0001_1_080.png"] {
        assert_eq!(std::fs::read(out.join(rel)).unwrap(), std::fs::read(again.join(rel)).unwrap(), "{rel}");
    }
    let err = brats::prepare(&opts, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("refusing to overwrite"), "{err}");
}

#[test]
fn brats_prep_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    std::fs::create_dir_all(raw.join("p1")).unwrap();
    let e = brats::prepare(&BratsOptions::new(&raw, tmp.path().join("o")), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("no patient directory with a file ending in \"flair.nii.gz\""), "{e}");
    let spec = WriteSpec::float([8, 8, 4]);
    multiad_nifti::write(&raw.join("p1/p1_flair.nii.gz"), &spec, &vec![1.0; 256]).unwrap();
    let e = brats::prepare(&BratsOptions::new(&raw, tmp.path().join("o")), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("FLAIR but no segmentation"), "{e}");
    multiad_nifti::write(&raw.join("p1/p1_seg.nii.gz"), &spec, &vec![0.0; 256]).unwrap();
    let e = brats::prepare(&BratsOptions::new(&raw, tmp.path().join("o")), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("slice 99 asked for, but the volume has 4 axial slices"), "{e}");
}

/// A BTCV- or LiTS-like CT: `nz` slices of 8 x 6 voxels, int16 with a
/// -1024 intercept; labels from `label_of(i, j, k)`.
fn ct_pair(dir: &Path, img: &str, lab: &str, nz: usize, label_of: impl Fn(usize, usize, usize) -> f32) {
    let (nx, ny) = (8usize, 6usize);
    let mut hu = Vec::new();
    let mut labels = Vec::new();
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                hu.push(-400.0 + 40.0 * i as f32 + 25.0 * j as f32 + k as f32);
                labels.push(label_of(i, j, k));
            }
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    let ct = WriteSpec { datatype: DataType::Int16, inter: -1024.0, ..WriteSpec::float([nx, ny, nz]) };
    multiad_nifti::write(&dir.join(img), &ct, &hu).unwrap();
    let ls = WriteSpec { datatype: DataType::Uint8, ..WriteSpec::float([nx, ny, nz]) };
    multiad_nifti::write(&dir.join(lab), &ls, &labels).unwrap();
}

#[test]
fn liver_prep_windows_masks_flips_and_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let btcv = tmp.path().join("btcv");
    // BTCV: liver (6) in slices 1-3 of patient 0001, 2-4 of 0002; spleen (1) elsewhere.
    for (id, first) in [("0001", 1), ("0002", 2)] {
        ct_pair(&btcv.join("img"), &format!("img{id}.nii.gz"), &format!("label{id}.nii.gz"), 6, |i, _, k| {
            if (first..first + 3).contains(&k) && i >= 4 {
                6.0
            } else if i == 0 {
                1.0
            } else {
                0.0
            }
        });
        // BTCV keeps labels in a sibling directory.
        let l = btcv.join("img").join(format!("label{id}.nii.gz"));
        std::fs::create_dir_all(btcv.join("label")).unwrap();
        std::fs::rename(&l, btcv.join("label").join(format!("label{id}.nii.gz"))).unwrap();
    }
    // LiTS: liver (1) in slices 1-4, lesion (2) at (5..7, 1..3) in slices 2-3.
    let lits = tmp.path().join("lits");
    for n in 0..10 {
        ct_pair(&lits, &format!("volume-{n}.nii"), &format!("segmentation-{n}.nii"), 6, |i, j, k| {
            if (2..4).contains(&k) && (5..7).contains(&i) && (1..3).contains(&j) {
                2.0
            } else if (1..5).contains(&k) && i >= 3 {
                1.0
            } else {
                0.0
            }
        });
    }
    let out = tmp.path().join("liver");
    let opts = LiverOptions { valid_fraction: 0.2, equalize: false, ..LiverOptions::new(&btcv, &lits, &out) };
    let r = liver::prepare(&opts, &mut |_| {}).unwrap();
    assert_eq!(r.train, counts(2, 6, 0));
    assert_eq!(r.valid, counts(2, 4, 4));
    assert_eq!(r.test, counts(8, 16, 16));

    // Window and liver mask, then the vertical flip: row r of the PNG is voxel
    // row 7 - r (rows run along i).
    let (w, h, px) = gray(&out.join("train/good/btcv_0001_002.png"));
    assert_eq!((w, h), (6, 8));
    for r in 0..8 {
        for c in 0..6 {
            let i = 7 - r;
            let hu: f32 = -400.0 + 40.0 * i as f32 + 25.0 * c as f32 + 2.0;
            let want = if i >= 4 { ((hu.clamp(-200.0, 250.0) + 200.0) * 255.0 / 450.0).round() as u8 } else { 0 };
            assert_eq!(px[r * 6 + c], want, "({r}, {c})");
        }
    }
    // Lesion masks, flipped like their images.
    let split_of = |id: &str| r.patients[&format!("lits_{id}")].clone();
    let s = split_of("3");
    let (_, _, mask) = gray(&out.join(format!("{s}/Ungood/label/lits_3_002.png")));
    for rr in 0..8 {
        for c in 0..6 {
            let i = 7 - rr;
            assert_eq!(mask[rr * 6 + c] == 255, (5..7).contains(&i) && (1..3).contains(&c), "({rr}, {c})");
        }
    }
    assert!(out.join(format!("{s}/good/img/lits_3_001.png")).exists());
    assert!(!out.join(format!("{s}/good/img/lits_3_005.png")).exists(), "no liver, no slice");
    let ds = load_bmad(&out, BmadSplit::Test).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (6, 32));

    // Equalisation on (the default) spreads the liver's values over 0..=255.
    let out2 = tmp.path().join("liver-eq");
    let opts2 = LiverOptions { flip: Flip::None, ..LiverOptions::new(&btcv, &lits, &out2) };
    liver::prepare(&opts2, &mut |_| {}).unwrap();
    let (_, _, eq) = gray(&out2.join("train/good/btcv_0002_003.png"));
    assert_eq!(eq.iter().max(), Some(&255));
    assert_eq!(eq[0], 0, "outside the liver stays black");

    // An image without its label volume.
    std::fs::remove_file(lits.join("segmentation-4.nii")).unwrap();
    let e = liver::prepare(&LiverOptions::new(&btcv, &lits, tmp.path().join("x")), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("volume-4.nii") && e.contains("no label volume segmentation-4.nii(.gz)"), "{e}");
}

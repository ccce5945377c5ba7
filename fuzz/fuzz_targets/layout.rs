//! The MVTec AD, BMAD and folder layout walkers on generated trees: every two input
//! bytes place one file (which directory, which name, which content) in a
//! fresh tree, which is then loaded as a data set and checked image by image,
//! as `train` and `test` do before the first batch.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use multiad_data::{check_all, AbnormalDir, DatasetSpec, FolderSpec, ImageConfig, MaskRule};

#[global_allocator]
static ALLOC: multiad_fuzz::Capped = multiad_fuzz::Capped;

const DIRS: &[&str] = &[
    "train/good",
    "test/good",
    "test/crack",
    "ground_truth/crack",
    "test/hole",
    "ground_truth/hole",
    "valid/good",
    "valid/Ungood/img",
    "valid/Ungood/label",
    "test/Ungood/img",
    "test/Ungood/label",
    "ground_truth",
    "",
];
const NAMES: &[&str] = &["000.png", "001.png", "000_mask.png", "001_mask.png", "a.jpg", "b.tiff", "notes.txt", "000", ".hidden.png"];

fn contents() -> &'static [Vec<u8>] {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(|| vec![multiad_fuzz::png(8, false), multiad_fuzz::png(8, true), multiad_fuzz::png(4, true), Vec::new(), b"not an image".to_vec()])
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cat");
    for pair in data.chunks_exact(2).take(64) {
        let d = DIRS[pair[0] as usize % DIRS.len()];
        let name = NAMES[(pair[0] as usize / DIRS.len()) % NAMES.len()];
        let at = root.join(d);
        std::fs::create_dir_all(&at).unwrap();
        let path = at.join(name);
        if path.is_dir() {
            continue;
        }
        std::fs::write(path, &contents()[pair[1] as usize % contents().len()]).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    let cfg = ImageConfig::square(16);
    // A folder spec over the same tree: normal images in train/good, defects
    // in test/crack and test/hole with `<stem>_mask.png` masks in ground_truth/.
    let folder = |required| {
        DatasetSpec::Folder(FolderSpec {
            path: root.clone(),
            name: None,
            normal: vec!["train/good".into()],
            abnormal: ["crack", "hole"]
                .iter()
                .map(|d| AbnormalDir { dir: format!("test/{d}").into(), defect_type: None, mask_dir: Some(format!("ground_truth/{d}").into()) })
                .collect(),
            masks: Some(MaskRule { suffix: "_mask".into(), extension: "png".into(), required }),
            extensions: None,
            test_fraction: 0.25,
            split_seed: data.len() as u64,
        })
    };
    let mvtec = DatasetSpec::Mvtec(multiad_data::MvtecSpec { path: root.clone(), name: None });
    for spec in [DatasetSpec::for_directory(&root), mvtec, folder(true), folder(false)] {
        if let Ok(ds) = spec.load(std::path::Path::new("/")) {
            let _ = check_all(&ds.train, &cfg);
            let _ = check_all(&ds.test, &cfg);
        }
    }
});

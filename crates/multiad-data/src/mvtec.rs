//! The MVTec AD layout of one category:
//! `train/good/*.png`, `test/<defect>/*.png`,
//! `ground_truth/<defect>/<stem>_mask.png` (none for `good`).

use std::path::Path;

use crate::error::{has_extension, sorted_entries, DataError, Result, IMAGE_EXTENSIONS};
use crate::sample::{Dataset, Label, Sample};

/// Images in a directory, sorted; an error if the directory is missing.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    if !dir.is_dir() {
        return Err(DataError::layout(dir, "directory not found"));
    }
    Ok(sorted_entries(dir)?.into_iter().filter(|p| p.is_file() && has_extension(p, IMAGE_EXTENSIONS)).collect())
}

/// Loads one MVTec AD category directory (e.g. `mvtec_anomaly_detection/bottle`).
/// Every anomalous test image must have its mask and every mask its image.
pub fn load_mvtec(category_dir: &Path) -> Result<Dataset> {
    if !category_dir.is_dir() {
        return Err(DataError::layout(category_dir, "MVTec AD category directory not found"));
    }
    let train_dir = category_dir.join("train").join("good");
    let train_images =
        list_images(&train_dir).map_err(|_| DataError::layout(&train_dir, "missing train/good: an MVTec AD category needs normal training images there"))?;
    if train_images.is_empty() {
        return Err(DataError::layout(&train_dir, "train/good contains no images (png, jpg, tif, bmp)"));
    }
    let train = train_images.into_iter().map(|image| Sample { image, mask: None, label: Label::Normal, defect_type: "good".into() }).collect();

    let test_dir = category_dir.join("test");
    if !test_dir.is_dir() {
        return Err(DataError::layout(&test_dir, "missing test/: an MVTec AD category needs test/<defect>/ directories"));
    }
    let gt_dir = category_dir.join("ground_truth");
    let mut test = Vec::new();
    for defect_dir in sorted_entries(&test_dir)?.into_iter().filter(|p| p.is_dir()) {
        let defect = defect_dir.file_name().unwrap().to_string_lossy().into_owned();
        let images = list_images(&defect_dir)?;
        if defect == "good" {
            test.extend(images.into_iter().map(|image| Sample { image, mask: None, label: Label::Normal, defect_type: defect.clone() }));
            continue;
        }
        let mask_dir = gt_dir.join(&defect);
        for image in images {
            let stem = image.file_stem().unwrap().to_string_lossy();
            let mask = mask_dir.join(format!("{stem}_mask.png"));
            if !mask.is_file() {
                return Err(DataError::file(&image, format!("anomalous test image has no mask; expected {}", mask.display())));
            }
            test.push(Sample { image, mask: Some(mask), label: Label::Anomalous, defect_type: defect.clone() });
        }
        // The other direction: a mask whose image is gone means a broken copy.
        if mask_dir.is_dir() {
            for mask in list_images(&mask_dir)? {
                let name = mask.file_stem().unwrap().to_string_lossy();
                let stem = name.strip_suffix("_mask").unwrap_or(&name);
                if !test.iter().any(|s| s.mask.as_deref() == Some(mask.as_path())) {
                    return Err(DataError::file(&mask, format!("mask has no test image; expected {}", defect_dir.join(format!("{stem}.png")).display())));
                }
            }
        }
    }
    if test.is_empty() {
        return Err(DataError::layout(&test_dir, "test/ contains no images"));
    }
    // Masks for defect types that have no test directory at all.
    if gt_dir.is_dir() {
        for d in sorted_entries(&gt_dir)?.into_iter().filter(|p| p.is_dir()) {
            if !test_dir.join(d.file_name().unwrap()).is_dir() {
                return Err(DataError::layout(&d, "ground-truth masks for a defect type that has no test/ directory"));
            }
        }
    }
    let name = category_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Dataset { name, root: category_dir.to_path_buf(), train, test })
}

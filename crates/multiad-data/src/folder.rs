//! A generic folder data set for users' own data: directories of normal
//! images, directories of anomalous images (one per defect type), masks
//! paired with images by a naming rule. Normal images are split into train and
//! test by a seeded shuffle.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{has_extension, sorted_entries, DataError, Result, IMAGE_EXTENSIONS};
use crate::mvtec::list_images;
use crate::sample::{Dataset, Label, Sample};

/// One directory of anomalous images.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbnormalDir {
    /// Relative to the data set's root.
    pub dir: PathBuf,
    /// Defaults to the first component of `dir` (`MT_Crack/Imgs` -> `MT_Crack`).
    #[serde(default)]
    pub defect_type: Option<String>,
    /// Where this directory's masks are, relative to the root; default: beside the images.
    #[serde(default)]
    pub mask_dir: Option<PathBuf>,
}

/// How a mask file is named after its image: `<stem><suffix>.<extension>`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    #[serde(default)]
    pub suffix: String,
    #[serde(default = "default_mask_ext")]
    pub extension: String,
    /// When true (the default) an anomalous image without a mask is an error;
    /// when false it gets no mask and only counts for image-level metrics.
    #[serde(default = "yes")]
    pub required: bool,
}

fn default_mask_ext() -> String {
    "png".into()
}
fn yes() -> bool {
    true
}
fn default_test_fraction() -> f64 {
    0.2
}

/// A folder data set, as written in an experiment's YAML (`loader: folder`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    /// The data set's root, relative to the data root given on the command line.
    pub path: PathBuf,
    #[serde(default)]
    pub name: Option<String>,
    /// Directories of normal images, relative to the root.
    pub normal: Vec<PathBuf>,
    pub abnormal: Vec<AbnormalDir>,
    /// `None`: no pixel masks (image-level metrics only).
    #[serde(default)]
    pub masks: Option<MaskRule>,
    /// Image file extensions to take (lower case, no dot); default: png, jpg,
    /// jpeg, tif, tiff, bmp.
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
    /// Share of the normal images held out for testing (anomalib's
    /// `normal_split_ratio` default is 0.2 too).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    #[serde(default)]
    pub split_seed: u64,
}

impl FolderSpec {
    /// The real magnetic-tile defect set (Huang et al.) as distributed:
    /// `MT_Free/Imgs` normal, the other `MT_*/Imgs` anomalous, `.jpg` images
    /// with same-name `.png` masks beside them.
    pub fn magnetic_tile(path: impl Into<PathBuf>) -> Self {
        let defects = ["MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"];
        FolderSpec {
            path: path.into(),
            name: Some("magnetic_tile".into()),
            normal: vec!["MT_Free/Imgs".into()],
            abnormal: defects.iter().map(|d| AbnormalDir { dir: format!("{d}/Imgs").into(), defect_type: None, mask_dir: None }).collect(),
            masks: Some(MaskRule { suffix: String::new(), extension: "png".into(), required: true }),
            extensions: Some(vec!["jpg".into()]),
            test_fraction: 0.2,
            split_seed: 0,
        }
    }

    fn extensions(&self) -> Vec<String> {
        match &self.extensions {
            Some(v) => v.iter().map(|e| e.trim_start_matches('.').to_ascii_lowercase()).collect(),
            None => IMAGE_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Lists, pairs and splits the files. `data_root` is prepended to `path`.
    pub fn load(&self, data_root: &Path) -> Result<Dataset> {
        let root = data_root.join(&self.path);
        if !root.is_dir() {
            return Err(DataError::layout(&root, "folder data set root not found"));
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(DataError::Other(format!("folder data set {}: test_fraction {} must be in [0, 1)", root.display(), self.test_fraction)));
        }
        let exts = self.extensions();
        let ext_refs: Vec<&str> = exts.iter().map(|s| s.as_str()).collect();
        let masks_beside = self.masks.as_ref().is_some_and(|m| ext_refs.contains(&m.extension.to_ascii_lowercase().as_str()));
        let list = |dir: &Path| -> Result<Vec<PathBuf>> {
            let all = list_images(dir)?;
            let mut imgs: Vec<PathBuf> = all.iter().filter(|p| has_extension(p, &ext_refs)).cloned().collect();
            // When masks live beside images with an image extension, a file
            // that is some other file's mask is not an image.
            if let (true, Some(rule)) = (masks_beside, &self.masks) {
                if rule.suffix.is_empty() {
                    return Err(DataError::layout(
                        dir,
                        "masks beside the images need a mask suffix or a different extension, or every image would be its own mask",
                    ));
                }
                imgs.retain(|p| {
                    let name = p.file_stem().unwrap().to_string_lossy();
                    !(has_extension(p, &[rule.extension.as_str()])
                        && name
                            .strip_suffix(rule.suffix.as_str())
                            .is_some_and(|stem| all.iter().any(|q| q != p && q.file_stem().unwrap().to_string_lossy() == stem)))
                });
            }
            Ok(imgs)
        };

        let mut normal = Vec::new();
        for d in &self.normal {
            normal.extend(list(&root.join(d))?);
        }
        if normal.is_empty() {
            return Err(DataError::layout(&root, "no normal images found in the `normal` directories"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.split_seed);
        normal.shuffle(&mut rng);
        let n_test = (normal.len() as f64 * self.test_fraction).round() as usize;
        let mut test_normal: Vec<PathBuf> = normal.drain(..n_test).collect();
        let mut train_normal = normal;
        if train_normal.is_empty() {
            return Err(DataError::layout(&root, "test_fraction leaves no normal image for training"));
        }
        train_normal.sort();
        test_normal.sort();
        let normal_sample = |image| Sample { image, mask: None, label: Label::Normal, defect_type: "good".into() };
        let train = train_normal.into_iter().map(normal_sample).collect();
        let mut test: Vec<Sample> = test_normal.into_iter().map(normal_sample).collect();

        for a in &self.abnormal {
            let dir = root.join(&a.dir);
            let defect =
                a.defect_type.clone().unwrap_or_else(|| a.dir.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default());
            let mask_dir = a.mask_dir.as_ref().map(|m| root.join(m)).unwrap_or_else(|| dir.clone());
            let images = list(&dir)?;
            if images.is_empty() {
                return Err(DataError::layout(&dir, "abnormal directory contains no images"));
            }
            let first = test.len();
            for image in images {
                let mask = match &self.masks {
                    None => None,
                    Some(rule) => {
                        let stem = image.file_stem().unwrap().to_string_lossy();
                        let m = mask_dir.join(format!("{stem}{}.{}", rule.suffix, rule.extension));
                        if m.is_file() {
                            Some(m)
                        } else if rule.required {
                            return Err(DataError::file(&image, format!("anomalous image has no mask; expected {}", m.display())));
                        } else {
                            None
                        }
                    }
                };
                test.push(Sample { image, mask, label: Label::Anomalous, defect_type: defect.clone() });
            }
            // Masks without an image, when masks have a directory of their own.
            if let (Some(rule), Some(_)) = (&self.masks, &a.mask_dir) {
                for m in sorted_entries(&mask_dir)? {
                    if !has_extension(&m, &[rule.extension.as_str()]) {
                        continue;
                    }
                    if !test[first..].iter().any(|s| s.mask.as_deref() == Some(m.as_path())) {
                        return Err(DataError::file(&m, format!("mask has no image in {}", dir.display())));
                    }
                }
            }
        }
        let name = self.name.clone().unwrap_or_else(|| root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        Ok(Dataset { name, root, train, test })
    }
}

/// A data set as named in an experiment or suite file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "loader", rename_all = "snake_case")]
pub enum DatasetSpec {
    /// One MVTec AD category directory.
    Mvtec(MvtecSpec),
    Folder(FolderSpec),
    /// BMAD's medical layout (Brain, Liver, RESC).
    Bmad(crate::bmad::BmadSpec),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MvtecSpec {
    pub path: PathBuf,
    /// Defaults to the category directory's name.
    #[serde(default)]
    pub name: Option<String>,
}

impl DatasetSpec {
    pub fn load(&self, data_root: &Path) -> Result<Dataset> {
        match self {
            DatasetSpec::Mvtec(m) => {
                let mut ds = crate::mvtec::load_mvtec(&data_root.join(&m.path))?;
                if let Some(n) = &m.name {
                    ds.name = n.clone();
                }
                Ok(ds)
            }
            DatasetSpec::Folder(f) => f.load(data_root),
            DatasetSpec::Bmad(b) => b.load(data_root),
        }
    }

    /// Where the data set lives, relative to the data root.
    pub fn path(&self) -> &Path {
        match self {
            DatasetSpec::Mvtec(m) => &m.path,
            DatasetSpec::Folder(f) => &f.path,
            DatasetSpec::Bmad(b) => &b.path,
        }
    }

    /// The name results are filed under: the spec's `name`, else the last
    /// component of its path.
    pub fn name(&self) -> String {
        let given = match self {
            DatasetSpec::Mvtec(m) => &m.name,
            DatasetSpec::Folder(f) => &f.name,
            DatasetSpec::Bmad(b) => &b.name,
        };
        given.clone().unwrap_or_else(|| self.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
    }

    /// The spec for a data set directory given on the command line: BMAD's
    /// layout when it has `test/Ungood` or `valid/Ungood`, MVTec AD's otherwise.
    pub fn for_directory(dir: &Path) -> Self {
        if dir.join("test/Ungood").is_dir() || dir.join("valid/Ungood").is_dir() {
            DatasetSpec::Bmad(crate::bmad::BmadSpec { path: dir.to_path_buf(), name: None, split: Default::default() })
        } else {
            DatasetSpec::Mvtec(MvtecSpec { path: dir.to_path_buf(), name: None })
        }
    }

    /// Reads a YAML data set file.
    pub fn from_yaml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::file(path, format!("cannot read: {e}")))?;
        serde_yaml_ng::from_str(&text).map_err(|e| DataError::file(path, format!("invalid data set spec: {e}")))
    }
}

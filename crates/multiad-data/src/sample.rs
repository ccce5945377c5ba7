use std::path::PathBuf;

/// Ground truth of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Normal,
    Anomalous,
}

impl Label {
    pub fn is_anomalous(self) -> bool {
        self == Label::Anomalous
    }
}

/// One image of a data set with everything known about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    pub image: PathBuf,
    /// Pixel mask; `None` means all-normal (every normal image, and anomalous
    /// images of data sets without masks).
    pub mask: Option<PathBuf>,
    pub label: Label,
    /// `good` for normal images, the defect class otherwise.
    pub defect_type: String,
}

/// A data set split into normal-only training images and labelled test images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Dataset {
    pub name: String,
    pub root: PathBuf,
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
}

impl Dataset {
    /// Counts per split, label and defect type, in a stable order.
    pub fn summary(&self) -> DatasetSummary {
        let mut defects: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        for s in &self.test {
            let e = defects.entry(s.defect_type.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(s.mask.is_some());
        }
        DatasetSummary {
            name: self.name.clone(),
            root: self.root.clone(),
            train: self.train.len(),
            test_normal: self.test.iter().filter(|s| s.label == Label::Normal).count(),
            test_anomalous: self.test.iter().filter(|s| s.label == Label::Anomalous).count(),
            test_by_defect: defects.into_iter().map(|(k, (n, m))| DefectCount { defect_type: k, images: n, masks: m }).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DefectCount {
    pub defect_type: String,
    pub images: usize,
    pub masks: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DatasetSummary {
    pub name: String,
    pub root: PathBuf,
    pub train: usize,
    pub test_normal: usize,
    pub test_anomalous: usize,
    pub test_by_defect: Vec<DefectCount>,
}

impl std::fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "data set {} ({})", self.name, self.root.display())?;
        writeln!(f, "  train: {} normal images", self.train)?;
        writeln!(f, "  test:  {} normal, {} anomalous", self.test_normal, self.test_anomalous)?;
        writeln!(f, "  {:<20} {:>7} {:>7}", "defect type", "images", "masks")?;
        for d in &self.test_by_defect {
            writeln!(f, "  {:<20} {:>7} {:>7}", d.defect_type, d.images, d.masks)?;
        }
        Ok(())
    }
}

//! Metrics per defect type: each anomalous type scored against all normal
//! test images, as if the test set held that type only. On a set whose
//! types differ in size (magnetic tile: `MT_Uneven` holds about 70% of all
//! defect pixels) the pooled pixel AUROC mostly measures the largest type;
//! this split shows what each type contributes.

use std::collections::BTreeMap;

use anyhow::Result;
use multiad_metrics::{aupro, AnomalyMap, BinaryScores, DEFAULT_FPR_LIMIT};
use serde::{Deserialize, Serialize};

/// One test image as the split needs it. `map` and `mask` are empty when
/// the image has no pixel ground truth (an anomalous image without a mask).
pub struct ScoredImage<'a> {
    pub defect_type: &'a str,
    pub anomalous: bool,
    pub score: f32,
    pub map: &'a [f32],
    pub mask: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefectTypeMetrics {
    /// Anomalous test images of this type.
    pub images: usize,
    /// This type against every normal test image.
    pub image_auroc: f64,
    /// Over the normal images' pixels and this type's masked images.
    pub pixel_auroc: Option<f64>,
    pub aupro: Option<f64>,
    /// Share of all anomalous pixels of the test set that belong to this
    /// type: its weight in the pooled pixel AUROC.
    pub defect_pixel_share: Option<f64>,
}

/// Metrics of every anomalous type (keyed by name). Normal images are those
/// with `anomalous == false`, whatever their type is called.
pub fn metrics_by_defect_type(images: &[ScoredImage], width: usize, height: usize) -> Result<BTreeMap<String, DefectTypeMetrics>> {
    let normals: Vec<&ScoredImage> = images.iter().filter(|s| !s.anomalous).collect();
    let mut types: BTreeMap<&str, Vec<&ScoredImage>> = BTreeMap::new();
    for s in images.iter().filter(|s| s.anomalous) {
        types.entry(s.defect_type).or_default().push(s);
    }
    let defect_pixels = |group: &[&ScoredImage]| -> usize { group.iter().filter(|s| has_map(s)).map(|s| s.mask.iter().filter(|&&m| m != 0).count()).sum() };
    let all_defect_pixels: usize = types.values().map(|g| defect_pixels(g)).sum();
    // The normal images' pixels are the negatives of every type: collected once.
    let mut normal_pixels = BinaryScores::new();
    for s in normals.iter().filter(|s| has_map(s)) {
        normal_pixels.push_map(s.map, s.mask)?;
    }
    let mut out = BTreeMap::new();
    for (name, group) in types {
        let mut image = BinaryScores::with_capacity(normals.len() + group.len());
        for s in normals.iter().chain(&group) {
            image.push(s.score, s.anomalous)?;
        }
        let own = defect_pixels(&group);
        let (pixel_auroc, pro, share) = if own > 0 {
            let mut pixel = normal_pixels.clone();
            let mut views = Vec::new();
            for s in normals.iter().chain(&group).filter(|s| has_map(s)) {
                if s.anomalous {
                    pixel.push_map(s.map, s.mask)?;
                }
                views.push(AnomalyMap { scores: s.map, mask: s.mask, width, height });
            }
            (Some(pixel.auroc()?), Some(aupro(&views, DEFAULT_FPR_LIMIT)?), Some(own as f64 / all_defect_pixels as f64))
        } else {
            (None, None, None)
        };
        out.insert(
            name.to_string(),
            DefectTypeMetrics { images: group.len(), image_auroc: image.auroc()?, pixel_auroc, aupro: pro, defect_pixel_share: share },
        );
    }
    Ok(out)
}

fn has_map(s: &ScoredImage) -> bool {
    !s.map.is_empty()
}

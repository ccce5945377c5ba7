//! Patient-level splits: every slice of a patient lands in one split, so no
//! patient is seen in training and in testing.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientSplit {
    Train,
    Valid,
    Test,
}

impl PatientSplit {
    pub fn name(self) -> &'static str {
        match self {
            PatientSplit::Train => "train",
            PatientSplit::Valid => "valid",
            PatientSplit::Test => "test",
        }
    }

    /// The split a directory name stands for (`train`, `valid`/`validation`/`val`, `test`).
    pub fn from_dir_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "train" | "training" => Some(PatientSplit::Train),
            "valid" | "validation" | "val" => Some(PatientSplit::Valid),
            "test" | "testing" => Some(PatientSplit::Test),
            _ => None,
        }
    }
}

/// How patients are assigned to splits.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// By the name of each patient directory's parent (`train/`, `validation/`, `test/`).
    Dirs,
    /// A seeded shuffle of the sorted patient ids: the first `test` share to
    /// test, the next `valid` share to valid, the rest to train.
    Random { valid: f64, test: f64, seed: u64 },
}

/// Splits sorted, distinct `ids` by a seeded shuffle (rounded shares).
pub fn random_split(ids: &[String], valid: f64, test: f64, seed: u64) -> Vec<PatientSplit> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_test = (ids.len() as f64 * test).round() as usize;
    let n_valid = (ids.len() as f64 * valid).round() as usize;
    let mut out = vec![PatientSplit::Train; ids.len()];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = if rank < n_test {
            PatientSplit::Test
        } else if rank < n_test + n_valid {
            PatientSplit::Valid
        } else {
            PatientSplit::Train
        };
    }
    out
}

//! The paper's published numbers that our tables are set beside.

/// One study of Table 4: (study, SE, D, MFF, medical I_L, medical P_L,
/// industrial I_L, industrial P_L).
pub type Table4Row = (u8, bool, bool, bool, f64, f64, f64, f64);

/// Table 4: AUROC (%) of the eight ablation studies.
pub const TABLE4: [Table4Row; 8] = [
    (1, true, true, true, 81.4, 97.0, 99.6, 98.4),
    (2, true, true, false, 78.6, 91.4, 93.4, 94.0),
    (3, true, false, true, 79.8, 93.2, 96.2, 95.8),
    (4, true, false, false, 77.5, 90.9, 92.8, 91.2),
    (5, false, true, true, 78.7, 95.4, 95.2, 96.8),
    (6, false, true, false, 72.3, 89.8, 91.9, 92.5),
    (7, false, false, true, 73.1, 91.4, 93.4, 95.1),
    (8, false, false, false, 70.9, 86.2, 89.5, 88.3),
];

/// (SE, D, MFF) of a study, numbered as in Table 4: study 1 has everything,
/// study 8 nothing; SE is on in 1-4, D in 1, 2, 5, 6, MFF in odd studies.
pub fn study_switches(study: u8) -> Option<(bool, bool, bool)> {
    TABLE4.iter().find(|r| r.0 == study).map(|r| (r.1, r.2, r.3))
}

/// The paper's (I_L, P_L) for a study in a domain (`medical` or `industrial`).
pub fn table4(study: u8, domain: &str) -> Option<(f64, f64)> {
    let r = TABLE4.iter().find(|r| r.0 == study)?;
    match domain {
        "medical" => Some((r.4, r.5)),
        "industrial" => Some((r.6, r.7)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbering_follows_the_paper() {
        for s in 1..=8u8 {
            let (se, d, mff) = super::study_switches(s).unwrap();
            let i = s - 1;
            assert_eq!((se, d, mff), (i < 4, (i / 2) % 2 == 0, i % 2 == 0), "study {s}");
        }
    }
}

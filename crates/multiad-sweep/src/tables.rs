//! Tables with Polars: the long table (one row per cell) as CSV and Parquet,
//! and the paper's views: Table 4 for ablations, Tables 2/3 for benchmarks,
//! as CSV and Markdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use polars::prelude::*;

use crate::paper::{study_switches, table4};
use crate::plan::{Plan, SweepKind};
use crate::records::CellRecord;

fn pct(v: f64) -> f64 {
    (v * 1000.0).round() / 10.0
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Writes `df` as CSV to `path` (atomically).
fn write_csv(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(df).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    multiad_detector::write_atomic(path, &bytes)
}

fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    ParquetWriter::new(&mut bytes).finish(df).map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    multiad_detector::write_atomic(path, bytes.get_ref())
}

/// One row per finished cell, every metric, time and memory.
pub fn long_table(plan: &Plan, records: &[CellRecord]) -> Result<DataFrame> {
    let col_s = |name: &str, f: &dyn Fn(&CellRecord) -> String| Column::new(name.into(), records.iter().map(f).collect::<Vec<_>>());
    let col_f = |name: &str, f: &dyn Fn(&CellRecord) -> Option<f64>| Column::new(name.into(), records.iter().map(f).collect::<Vec<Option<f64>>>());
    let df = DataFrame::new_infer_height(vec![
        col_s("kind", &|_| plan.kind.name().into()),
        col_s("suite", &|_| plan.suite.name.clone()),
        col_s("preset", &|_| plan.preset.clone()),
        col_s("dataset", &|r| r.dataset.clone()),
        col_s("domain", &|r| r.domain.clone().unwrap_or_default()),
        col_s("method", &|r| r.method.clone()),
        Column::new("study".into(), records.iter().map(|r| r.study.map(|s| s as i32)).collect::<Vec<_>>()),
        Column::new("se".into(), records.iter().map(|r| r.switches.0).collect::<Vec<_>>()),
        Column::new("d".into(), records.iter().map(|r| r.switches.1).collect::<Vec<_>>()),
        Column::new("mff".into(), records.iter().map(|r| r.switches.2).collect::<Vec<_>>()),
        Column::new("seed".into(), records.iter().map(|r| r.seed).collect::<Vec<_>>()),
        Column::new("epochs".into(), records.iter().map(|r| r.epochs.map(|e| e as u64)).collect::<Vec<_>>()),
        col_f("image_auroc", &|r| Some(r.metrics.image_auroc)),
        col_f("pixel_auroc", &|r| r.metrics.pixel_auroc),
        col_f("aupro", &|r| r.metrics.aupro),
        col_f("f1_max", &|r| Some(r.metrics.f1_max)),
        col_f("pixel_f1_max", &|r| r.metrics.pixel_f1_max),
        col_f("border_max_share_normal", &|r| r.metrics.border_maxima.map(|b| b.normal_share)),
        Column::new("train_images".into(), records.iter().map(|r| r.training.train_images as u64).collect::<Vec<_>>()),
        Column::new("test_images".into(), records.iter().map(|r| r.metrics.test_images as u64).collect::<Vec<_>>()),
        col_f("train_seconds", &|r| Some(r.state.train_seconds)),
        col_f("test_seconds", &|r| Some(r.state.test_seconds)),
        col_f("train_peak_rss_mib", &|r| r.training.peak_rss_mib),
        col_f("test_peak_rss_mib", &|r| r.metrics.peak_rss_mib),
        col_s("git_commit", &|r| r.state.provenance.as_ref().map(|p| p.git_commit.clone()).unwrap_or_default()),
        col_s("cpu", &|r| r.state.provenance.as_ref().map(|p| p.cpu.clone()).unwrap_or_default()),
        col_s("device", &|r| r.state.provenance.as_ref().map(|p| p.device.clone()).unwrap_or_default()),
    ])?;
    Ok(df)
}

fn check(b: bool) -> &'static str {
    if b {
        "✓"
    } else {
        "-"
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_default()
}

fn fmt_delta(v: Option<f64>) -> String {
    v.map(|x| format!("{x:+.1}")).unwrap_or_default()
}

/// Table 4: the eight studies, image- and pixel-level AUROC (%) averaged per
/// domain, beside the paper's numbers and the difference.
pub fn table4_view(records: &[CellRecord]) -> Result<(DataFrame, String)> {
    let mut domains: Vec<String> = records.iter().filter_map(|r| r.domain.clone()).collect();
    domains.sort();
    domains.dedup();
    if domains.is_empty() {
        domains.push(String::new());
    }
    let studies: Vec<u8> = {
        let mut s: Vec<u8> = records.iter().filter_map(|r| r.study).collect();
        s.sort();
        s.dedup();
        s
    };
    let mut cols: BTreeMap<usize, (String, Vec<Option<f64>>)> = BTreeMap::new();
    let mut header = vec!["Study".to_string(), "SE".into(), "D".into(), "MFF".into()];
    let mut k = 0;
    for d in &domains {
        let name = if d.is_empty() { "all".to_string() } else { d.clone() };
        for what in ["I_L", "P_L", "paper I_L", "paper P_L", "Δ I_L", "Δ P_L"] {
            let h = format!("{name} {what}");
            header.push(h.clone());
            cols.insert(k, (h, Vec::new()));
            k += 1;
        }
    }
    let mut md_rows = Vec::new();
    for &s in &studies {
        let (se, dd, mff) = study_switches(s).unwrap_or((false, false, false));
        let mut row = vec![s.to_string(), check(se).into(), check(dd).into(), check(mff).into()];
        for (di, d) in domains.iter().enumerate() {
            let of = |r: &&CellRecord| r.study == Some(s) && (d.is_empty() || r.domain.as_deref() == Some(d));
            let rs: Vec<&CellRecord> = records.iter().filter(of).collect();
            let i = mean(&rs.iter().map(|r| pct(r.metrics.image_auroc)).collect::<Vec<_>>());
            let p = mean(&rs.iter().filter_map(|r| r.metrics.pixel_auroc.map(pct)).collect::<Vec<_>>());
            let paper = table4(s, d);
            let vals = [i, p, paper.map(|x| x.0), paper.map(|x| x.1), i.zip(paper).map(|(a, b)| a - b.0), p.zip(paper).map(|(a, b)| a - b.1)];
            for (j, v) in vals.iter().enumerate() {
                cols.get_mut(&(di * 6 + j)).unwrap().1.push(v.map(|x| (x * 10.0).round() / 10.0));
                row.push(if j >= 4 { fmt_delta(*v) } else { fmt(*v) });
            }
        }
        md_rows.push(row);
    }
    let mut columns = vec![
        Column::new("study".into(), studies.iter().map(|&s| s as i32).collect::<Vec<_>>()),
        Column::new("se".into(), studies.iter().map(|&s| study_switches(s).map(|x| x.0)).collect::<Vec<_>>()),
        Column::new("d".into(), studies.iter().map(|&s| study_switches(s).map(|x| x.1)).collect::<Vec<_>>()),
        Column::new("mff".into(), studies.iter().map(|&s| study_switches(s).map(|x| x.2)).collect::<Vec<_>>()),
    ];
    for (_, (h, v)) in cols {
        columns.push(Column::new(h.replace(' ', "_").replace("Δ", "delta").into(), v));
    }
    let df = DataFrame::new_infer_height(columns)?;
    let mut md =
        String::from("AUROC (%) of the Table 4 studies, averaged over each domain's data sets; `paper` = Rahmaniar & Suzuki, Table 4; Δ = ours − paper.\n\n");
    md.push_str(&markdown(&header, &md_rows));
    Ok((df, md))
}

fn markdown(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|{}|\n", header.join(" | "), header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// Tables 2/3: data sets x methods, I_L and P_L (%), with an average row;
/// in Markdown the best of each row is bold and the second underlined.
pub fn benchmark_view(records: &[CellRecord]) -> Result<(DataFrame, String)> {
    let mut methods: Vec<String> = Vec::new();
    let mut datasets: Vec<String> = Vec::new();
    for r in records {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
        if !datasets.contains(&r.dataset) {
            datasets.push(r.dataset.clone());
        }
    }
    let get = |d: &str, m: &str| records.iter().find(|r| r.dataset == d && r.method == m);
    let mut rows: Vec<(String, Vec<Option<f64>>)> = datasets
        .iter()
        .map(|d| {
            let v = methods
                .iter()
                .flat_map(|m| {
                    let r = get(d, m);
                    [r.map(|r| pct(r.metrics.image_auroc)), r.and_then(|r| r.metrics.pixel_auroc.map(pct))]
                })
                .collect();
            (d.clone(), v)
        })
        .collect();
    let ncol = methods.len() * 2;
    let avg: Vec<Option<f64>> = (0..ncol).map(|j| mean(&rows.iter().filter_map(|r| r.1[j]).collect::<Vec<_>>()).map(|x| (x * 10.0).round() / 10.0)).collect();
    rows.push(("Average".into(), avg));
    let mut columns = vec![Column::new("dataset".into(), rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>())];
    for (j, m) in methods.iter().enumerate() {
        for (k, what) in ["image_auroc", "pixel_auroc"].iter().enumerate() {
            columns.push(Column::new(format!("{m}_{what}").into(), rows.iter().map(|r| r.1[2 * j + k]).collect::<Vec<_>>()));
        }
    }
    let df = DataFrame::new_infer_height(columns)?;
    let mut header = vec!["Data set".to_string()];
    for m in &methods {
        let label = multiad_methods::info(m).map(|i| i.label).unwrap_or(m.as_str());
        header.push(format!("{label} I_L"));
        header.push(format!("{label} P_L"));
    }
    let md_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(d, v)| {
            let mut row = vec![d.clone()];
            let mut cells: Vec<String> = v.iter().map(|x| fmt(*x)).collect();
            for k in 0..2 {
                // Rank this metric's values across methods.
                let mut vals: Vec<f64> = (0..methods.len()).filter_map(|j| v[2 * j + k]).collect();
                vals.sort_by(|a, b| b.total_cmp(a));
                vals.dedup();
                for j in 0..methods.len() {
                    if let Some(x) = v[2 * j + k] {
                        if methods.len() > 1 && Some(&x) == vals.first() {
                            cells[2 * j + k] = format!("**{x:.1}**");
                        } else if methods.len() > 2 && Some(&x) == vals.get(1) {
                            cells[2 * j + k] = format!("<u>{x:.1}</u>");
                        }
                    }
                }
            }
            row.extend(cells);
            row
        })
        .collect();
    let mut md = String::from("AUROC (%): I_L image level, P_L pixel level; best of each row in bold, second underlined.\n\n");
    md.push_str(&markdown(&header, &md_rows));
    Ok((df, md))
}

/// Writes every table of the sweep under `<sweep>/tables/`; returns the paths.
pub fn write_all(plan: &Plan, records: &[CellRecord]) -> Result<Vec<PathBuf>> {
    let dir = plan.dir.join("tables");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    let mut long = long_table(plan, records)?;
    write_csv(&mut long, &dir.join("long.csv"))?;
    write_parquet(&mut long, &dir.join("long.parquet"))?;
    out.extend([dir.join("long.csv"), dir.join("long.parquet")]);
    let (mut view, md, stem) = match plan.kind {
        SweepKind::Ablation => {
            let (df, md) = table4_view(records)?;
            (df, md, "table4")
        }
        SweepKind::Benchmark => {
            let (df, md) = benchmark_view(records)?;
            (df, md, "benchmark")
        }
    };
    write_csv(&mut view, &dir.join(format!("{stem}.csv")))?;
    multiad_detector::run_dir::write_atomic(&dir.join(format!("{stem}.md")), md.as_bytes())?;
    out.extend([dir.join(format!("{stem}.csv")), dir.join(format!("{stem}.md"))]);
    Ok(out)
}

/// The metric columns of a sweep's long table (`tables/long.csv`), one
/// sorted row per cell: what two runs of the same sweep must agree on (times
/// and memory differ run to run). Used by the resumption tests and
/// `cargo xtask faults`.
pub fn metric_rows(out: &Path) -> Result<Vec<String>> {
    let path = out.join("tables/long.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let keep: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, h)| ["dataset", "study", "method", "image_auroc", "pixel_auroc", "aupro", "f1_max", "pixel_f1_max"].contains(h))
        .map(|(i, _)| i)
        .collect();
    let mut rows: Vec<String> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            keep.iter().map(|&i| f.get(i).copied().unwrap_or("")).collect::<Vec<_>>().join(",")
        })
        .collect();
    rows.sort();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use multiad_detector::TestMetrics;
    use multiad_detector::TrainingRecord;

    fn rec(dataset: &str, method: &str, study: Option<u8>, domain: &str, i: f64, p: f64) -> CellRecord {
        CellRecord {
            dataset: dataset.into(),
            domain: Some(domain.into()),
            method: method.into(),
            study,
            switches: study.and_then(study_switches).unwrap_or((true, true, true)),
            seed: 0,
            epochs: Some(1),
            metrics: TestMetrics {
                image_auroc: i,
                pixel_auroc: Some(p),
                aupro: None,
                f1_max: 0.5,
                f1_threshold: 1.0,
                pixel_f1_max: None,
                pixel_f1_threshold: None,
                test_images: 10,
                seconds: 1.0,
                peak_rss_mib: None,
                per_defect_type: Default::default(),
                border_maxima: None,
            },
            training: TrainingRecord { method: Some(method.into()), train_images: 10, seconds: 1.0, peak_rss_mib: None, details: Default::default() },
            state: Default::default(),
            history: vec![],
            scores: vec![],
            heatmaps: vec![],
        }
    }

    #[test]
    fn benchmark_view_marks_best_bold_and_second_underlined() {
        let rs = vec![
            rec("a", "m1", None, "medical", 0.9, 0.8),
            rec("a", "m2", None, "medical", 0.95, 0.7),
            rec("a", "m3", None, "medical", 0.5, 0.9),
            rec("b", "m1", None, "medical", 0.7, 0.6),
            rec("b", "m2", None, "medical", 0.6, 0.6),
            rec("b", "m3", None, "medical", 0.8, 0.5),
        ];
        let (df, md) = benchmark_view(&rs).unwrap();
        assert_eq!(df.height(), 3); // a, b, Average
        let row_a = md.lines().find(|l| l.starts_with("| a |")).unwrap();
        assert_eq!(row_a, "| a | <u>90.0</u> | <u>80.0</u> | **95.0** | 70.0 | 50.0 | **90.0** |");
        // Ties share the rank: both 60.0 pixel values are best.
        let row_b = md.lines().find(|l| l.starts_with("| b |")).unwrap();
        assert_eq!(row_b, "| b | <u>70.0</u> | **60.0** | 60.0 | **60.0** | **80.0** | <u>50.0</u> |");
        let avg = md.lines().find(|l| l.starts_with("| Average |")).unwrap();
        assert_eq!(avg, "| Average | **80.0** | **70.0** | <u>77.5</u> | <u>65.0</u> | 65.0 | **70.0** |");
    }

    #[test]
    fn table4_view_averages_per_domain_beside_the_paper() {
        let rs = vec![
            rec("x", "multiad", Some(1), "medical", 0.80, 0.90),
            rec("y", "multiad", Some(1), "medical", 0.90, 1.00),
            rec("z", "multiad", Some(1), "industrial", 0.99, 0.98),
        ];
        let (df, md) = table4_view(&rs).unwrap();
        assert_eq!(df.height(), 1);
        let row = md.lines().find(|l| l.starts_with("| 1 |")).unwrap();
        // industrial first (sorted), then medical: mean 85.0 / 95.0 vs paper 81.4 / 97.0.
        assert_eq!(row, "| 1 | ✓ | ✓ | ✓ | 99.0 | 98.0 | 99.6 | 98.4 | -0.6 | -0.4 | 85.0 | 95.0 | 81.4 | 97.0 | +3.6 | -2.0 |");
    }
}

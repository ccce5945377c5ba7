//! `multiad prep`: volume data sets into BMAD's 2-D layout.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use multiad_prep::brats::{self, BratsOptions};
use multiad_prep::liver::{self, LiverOptions};
use multiad_prep::{Flip, PrepReport, SplitRule};

#[derive(Subcommand)]
pub enum PrepCommand {
    /// BraTS2021 FLAIR volumes -> BMAD's Brain layout (axial slices, patient split).
    Brats2021(BratsArgs),
    /// BTCV (normal training) + LiTS (test with lesion masks) CT -> BMAD's Liver layout.
    Liver(LiverArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    /// `dirs` when every patient sits in a train/, validation/ or test/ directory, else `random`.
    Auto,
    /// By the patient directory's parent name.
    Dirs,
    /// Seeded shuffle of patient ids (--valid-fraction, --test-fraction, --seed).
    Random,
}

#[derive(Args)]
pub struct BratsArgs {
    /// Directory with one directory per patient (at any depth).
    #[arg(long)]
    raw: PathBuf,
    /// The BMAD-layout directory to create (refused if it exists).
    #[arg(long)]
    out: PathBuf,
    /// A patient's FLAIR volume is the file whose name ends with this.
    #[arg(long, default_value = "flair.nii.gz")]
    flair: String,
    /// A patient's segmentation is the file whose name ends with this.
    #[arg(long, default_value = "seg.nii.gz")]
    seg: String,
    /// First axial slice kept (BMAD: 60).
    #[arg(long, default_value_t = 60)]
    first_slice: usize,
    /// Last axial slice kept, inclusive (BMAD: 99).
    #[arg(long, default_value_t = 99)]
    last_slice: usize,
    #[arg(long, value_enum, default_value = "auto")]
    split: SplitArg,
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
pub struct LiverArgs {
    /// BTCV directory (img/imgNNNN.nii.gz with label/labelNNNN.nii.gz, at any depth).
    #[arg(long)]
    btcv: PathBuf,
    /// LiTS directory (volume-N.nii with segmentation-N.nii, at any depth).
    #[arg(long)]
    lits: PathBuf,
    /// The BMAD-layout directory to create (refused if it exists).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = -200.0, allow_hyphen_values = true)]
    hu_min: f32,
    #[arg(long, default_value_t = 250.0)]
    hu_max: f32,
    /// Mirror applied to every slice: vertical, horizontal or none.
    #[arg(long, default_value = "vertical")]
    flip: Flip,
    /// Skip histogram equalisation.
    #[arg(long)]
    no_equalize: bool,
    /// Share of LiTS patients in valid/ (the rest go to test/).
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn print_report(r: &PrepReport) {
    println!("wrote {}", r.out.display());
    for (name, c) in [("train", &r.train), ("valid", &r.valid), ("test", &r.test)] {
        println!("  {name:<5} {:>4} patients {:>6} good {:>6} Ungood", c.patients, c.good, c.ungood);
    }
    for (why, n) in &r.skipped {
        println!("  skipped {n} slices: {why}");
    }
    if r.train.good == 0 {
        eprintln!("warning: no normal training slice was written; widen the slice range or change the split");
    }
}

pub fn run(cmd: PrepCommand) -> Result<()> {
    let mut log = |line: &str| eprintln!("{line}");
    let report = match cmd {
        PrepCommand::Brats2021(a) => {
            let split = match a.split {
                SplitArg::Auto => None,
                SplitArg::Dirs => Some(SplitRule::Dirs),
                SplitArg::Random => Some(SplitRule::Random { valid: a.valid_fraction, test: a.test_fraction, seed: a.seed }),
            };
            let opts = BratsOptions {
                flair_suffix: a.flair,
                seg_suffix: a.seg,
                first_slice: a.first_slice,
                last_slice: a.last_slice,
                split,
                valid_fraction: a.valid_fraction,
                test_fraction: a.test_fraction,
                seed: a.seed,
                ..BratsOptions::new(a.raw, a.out)
            };
            brats::prepare(&opts, &mut log)?
        }
        PrepCommand::Liver(a) => {
            let opts = LiverOptions {
                hu_min: a.hu_min,
                hu_max: a.hu_max,
                flip: a.flip,
                equalize: !a.no_equalize,
                valid_fraction: a.valid_fraction,
                seed: a.seed,
                ..LiverOptions::new(a.btcv, a.lits, a.out)
            };
            liver::prepare(&opts, &mut log)?
        }
    };
    print_report(&report);
    Ok(())
}

//! Per-epoch checkpoints for methods that train: every tensor a resumed run
//! needs (weights, optimiser state) plus the number of finished epochs, in
//! one safetensors file written atomically.
//!
//! The checkpoint a new one replaces is kept as `checkpoint.prev.safetensors`,
//! so that a torn or corrupt latest file (a disk error, a crash of the
//! machine between write and flush) costs one epoch, not the run: resumption
//! tries the latest file, then the previous one, and says which it used.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::run_dir::{save_tensors_atomic, sync_dir, RunDir};

pub const FILE: &str = "checkpoint.safetensors";
/// The checkpoint before the latest one.
pub const PREVIOUS: &str = "checkpoint.prev.safetensors";
const EPOCHS: &str = "meta.epochs_done";

/// Writes `tensors` and `epochs_done` to the run's checkpoint: to a temporary
/// file, flushed to disk, then renamed into place after the old checkpoint
/// has become [`PREVIOUS`]. A failed write (a full disk) removes its
/// temporary file and leaves both older checkpoints as they were.
pub fn save(run: &RunDir, mut tensors: HashMap<String, Tensor>, epochs_done: usize) -> Result<()> {
    tensors.insert(EPOCHS.into(), Tensor::new(&[epochs_done as i64], &Device::Cpu)?);
    let path = run.path(FILE);
    // Written beside the latest first, so that a failed write (a full disk)
    // leaves the latest and the previous checkpoint as they were.
    let fresh = run.path(".checkpoint.next.safetensors");
    save_tensors_atomic(&tensors, &fresh).with_context(|| format!("writing checkpoint {}", path.display()))?;
    if path.is_file() {
        let prev = run.path(PREVIOUS);
        std::fs::rename(&path, &prev).with_context(|| format!("moving {} to {}", path.display(), prev.display()))?;
    }
    std::fs::rename(&fresh, &path).with_context(|| format!("moving {} into place", path.display()))?;
    sync_dir(&run.dir);
    Ok(())
}

/// Reads the latest checkpoint and hands it to `restore`; when the file is
/// torn, corrupt or lacks what `restore` needs, tries [`PREVIOUS`] instead
/// and writes a line naming the file it skipped and why. `None` when the run
/// has no checkpoint; an error listing both files when neither can be used.
pub fn load_with<T>(
    run: &RunDir,
    device: &Device,
    log: &mut dyn Write,
    mut restore: impl FnMut(&HashMap<String, Tensor>, &Path) -> Result<T>,
) -> Result<Option<(T, usize)>> {
    let mut failures = Vec::new();
    for name in [FILE, PREVIOUS] {
        let path = run.path(name);
        if !path.is_file() {
            continue;
        }
        let attempt = (|| -> Result<(T, usize)> {
            let t = candle_core::safetensors::load(&path, device).with_context(|| format!("reading {}", path.display()))?;
            let epochs = t
                .get(EPOCHS)
                .with_context(|| format!("{}: `{EPOCHS}` is missing", path.display()))?
                .to_vec1::<i64>()
                .with_context(|| format!("{}: `{EPOCHS}`", path.display()))?;
            let epochs = match epochs.as_slice() {
                [e] if *e >= 0 => *e as usize,
                other => bail!("{}: `{EPOCHS}` is {other:?}, not one count of epochs", path.display()),
            };
            Ok((restore(&t, &path)?, epochs))
        })();
        match attempt {
            Ok((value, epochs)) => {
                if !failures.is_empty() {
                    writeln!(
                        log,
                        "warning: the latest checkpoint cannot be used ({}); resuming from the previous one, {} (after epoch {epochs})",
                        failures.join("; "),
                        path.display()
                    )?;
                }
                return Ok(Some((value, epochs)));
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    if failures.is_empty() {
        return Ok(None);
    }
    bail!("no usable checkpoint in {}: {}. Start the run afresh in another --out", run.dir.display(), failures.join("; "))
}

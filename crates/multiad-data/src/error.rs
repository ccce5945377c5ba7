use std::path::{Path, PathBuf};

/// Every data error names the file or directory it is about and what is wrong
/// with it, so that a user can fix the data set without reading our code.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{}: {problem}", dir.display())]
    Layout { dir: PathBuf, problem: String },
    #[error("{0}")]
    Other(String),
    /// Every file that failed a check of the whole data set, listed at once.
    #[error("{} of {checked} files failed the check:\n{}", failures.len(), list(failures))]
    Many { checked: usize, failures: Vec<DataError> },
}

fn list(failures: &[DataError]) -> String {
    failures.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n")
}

impl DataError {
    pub fn file(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        DataError::File { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }

    pub fn layout(dir: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        DataError::Layout { dir: dir.as_ref().to_path_buf(), problem: problem.into() }
    }

    /// The path this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            DataError::File { path, .. } => Some(path),
            DataError::Layout { dir, .. } => Some(dir),
            DataError::Other(_) => None,
            DataError::Many { failures, .. } => failures.first().and_then(|f| f.path()),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Lists a directory's entries sorted by name (file systems return them in no
/// fixed order, and every split and seed depends on the order).
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::layout(dir, format!("cannot list directory: {e}")))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| DataError::layout(dir, format!("cannot list directory: {e}")))?;
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// True when the file's extension is one of `exts` (case-insensitive).
pub(crate) fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension().and_then(|e| e.to_str()).map(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e))).unwrap_or(false)
}

/// Image files that data sets may contain. Files with other extensions are
/// ignored when listing a directory (README.md, Thumbs.db, ...).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp"];

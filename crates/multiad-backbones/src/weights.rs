//! Finding and opening weight files: a local path, or a file in the Hugging
//! Face Hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`),
//! as the `huggingface_hub` / `hf-hub` clients lay it out.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("weights for {repo} ({file}) are not available offline: {hint}")]
    NotCached { repo: String, file: String, hint: String },
}

/// The Hub cache root, following the environment variables the official
/// clients read.
pub fn hub_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return Some(PathBuf::from(p).join("hub"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// `file` of model `repo` (e.g. `timm/wide_resnet50_2.tv_in1k`,
/// `model.safetensors`) at revision `main`, if the cache holds it.
pub fn find_in_hub_cache(cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let rev = std::fs::read_to_string(dir.join("refs/main")).ok()?;
    let p = dir.join("snapshots").join(rev.trim()).join(file);
    p.is_file().then_some(p)
}

/// Resolves a weight file: an explicit path first, then the Hub cache.
pub fn resolve(explicit: Option<&Path>, repo: &str, file: &str) -> Result<PathBuf, WeightsError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(WeightsError::File { path: p.to_path_buf(), problem: "weights file not found".into() })
        };
    }
    let cache = hub_cache_dir();
    if let Some(p) = cache.as_deref().and_then(|c| find_in_hub_cache(c, repo, file)) {
        return Ok(p);
    }
    Err(WeightsError::NotCached {
        repo: repo.into(),
        file: file.into(),
        hint: format!(
            "download https://huggingface.co/{repo}/resolve/main/{file} and pass it with `teacher.weights: PATH` in the experiment file, or run `huggingface-cli download {repo} {file}` to fill the cache at {}",
            cache.map(|c| c.display().to_string()).unwrap_or_else(|| "~/.cache/huggingface/hub".into())
        ),
    })
}

/// Opens a safetensors file as a `VarBuilder` (f32). Missing or mis-shaped
/// tensors are reported by candle with their name when the model is built;
/// use [`build`] to have the file named too.
pub fn open(path: &Path, device: &Device) -> Result<VarBuilder<'static>, WeightsError> {
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| WeightsError::File { path: path.into(), problem: format!("not a readable safetensors file: {e}") })?;
    Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// Builds a model from a weights file, naming the file in any error.
pub fn build<T>(
    path: &Path,
    device: &Device,
    f: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>,
) -> Result<T, WeightsError> {
    let vb = open(path, device)?;
    f(vb).map_err(|e| WeightsError::File { path: path.into(), problem: format!("{e}") })
}

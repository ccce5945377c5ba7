//! What a result was produced on and from: recorded in every sweep.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` of the checkout, with `-dirty` when the work tree
    /// has uncommitted changes; `unknown` outside git.
    pub git_commit: String,
    pub hostname: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub device: String,
}

/// This machine's host name (empty when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn git(args: &[&str], dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git").args(args).current_dir(dir).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string())
}

impl Provenance {
    /// Looks at the machine and at the git checkout containing `dir`.
    pub fn here(dir: &Path) -> Self {
        let commit = git(&["rev-parse", "HEAD"], dir).unwrap_or_else(|| "unknown".into());
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"], dir).is_some_and(|s| !s.is_empty());
        let mem_kib: f64 = proc_field("/proc/meminfo", "MemTotal").and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok())).unwrap_or(0.0);
        Provenance {
            git_commit: if dirty { format!("{commit}-dirty") } else { commit },
            hostname: hostname(),
            cpu: proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| std::env::consts::ARCH.into()),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib: (mem_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            device: "cpu".into(),
        }
    }
}

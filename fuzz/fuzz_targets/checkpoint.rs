//! Safetensors weight loading and checkpoint resumption: the input becomes a
//! run's latest checkpoint (beside a valid previous one, half the time), and
//! resumption restores it into a smoke-preset Multi-AD model, or falls back,
//! or refuses.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use multiad_detector::{checkpoint, ConfigFile, RunDir};

#[global_allocator]
static ALLOC: multiad_fuzz::Capped = multiad_fuzz::Capped;

struct Fixture {
    model: multiad::MultiAd,
    valid: Vec<u8>,
    dir: tempfile::TempDir,
}

// SAFETY of sharing: the fuzzer calls the target from one thread.
struct Shared(Fixture);
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Shared> = OnceLock::new();
    &F.get_or_init(|| {
        let text = include_str!("../../experiments/smoke.yaml");
        let cfg = multiad::ExperimentConfig::from_yaml_str(text, Path::new("smoke.yaml")).expect("the smoke preset parses");
        let model = multiad::MultiAd::build(&cfg, &Device::Cpu).expect("the smoke model builds");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let run = RunDir { dir: dir.path().to_path_buf() };
        checkpoint::save(&run, model.weights(), 1).expect("writing a valid checkpoint");
        let valid = std::fs::read(run.path(checkpoint::FILE)).expect("reading it back");
        Shared(Fixture { model, valid, dir })
    })
    .0
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let run = RunDir { dir: f.dir.path().to_path_buf() };
    let keep_previous = data.first().is_some_and(|b| b & 1 == 1);
    let prev = run.path(checkpoint::PREVIOUS);
    if keep_previous {
        std::fs::write(&prev, &f.valid).unwrap();
    } else {
        let _ = std::fs::remove_file(&prev);
    }
    std::fs::write(run.path(checkpoint::FILE), data).unwrap();
    let restored = checkpoint::load_with(&run, &Device::Cpu, &mut std::io::sink(), |t, p| f.model.load_weights(t, p));
    if keep_previous {
        assert!(restored.is_ok_and(|r| r.is_some()), "a valid previous checkpoint must carry resumption");
    }
    // Plain weight loading, as `multiad test` reads model.safetensors.
    if let Ok(t) = candle_core::safetensors::load_buffer(data, &Device::Cpu) {
        let _ = f.model.load_weights(&t, Path::new("fuzz/model.safetensors"));
    }
});

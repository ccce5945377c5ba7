//! The registry: every preset file of every method parses; overrides and
//! relative weight paths are applied; unknown methods are named.

use std::path::{Path, PathBuf};

use multiad_methods::{names, parse, parse_file, preset_file, MethodConfig, Overrides};
use multiad_nn::DeviceSpec;

fn experiments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../experiments")
}

#[test]
fn every_method_has_three_presets_that_parse_as_that_method() {
    for m in names() {
        for p in ["smoke", "cpu", "paper"] {
            let f = preset_file(&experiments(), m, p);
            let cfg = parse_file(&f, Overrides::default()).unwrap_or_else(|e| panic!("{}: {e:#}", f.display()));
            assert_eq!(cfg.method(), m, "{}", f.display());
            // Written out and read back, a config is the same (what a run directory stores).
            let again = parse(&cfg.to_yaml(), &f, Overrides::default(), Path::new("/")).unwrap();
            assert_eq!(again, cfg, "{}", f.display());
        }
    }
    assert_eq!(names().len(), 7);
}

#[test]
fn overrides_reach_the_right_keys_and_weights_become_absolute() {
    let text = "method: stfpm\nseed: 1\nepochs: 100\nbackbone: {kind: resnet18, weights: w/r18.safetensors}\n";
    let cfg = parse(text, Path::new("s.yaml"), Overrides { seed: Some(9), epochs: Some(3), device: Some(DeviceSpec::Cuda(1)) }, Path::new("/work")).unwrap();
    assert_eq!(cfg.device(), DeviceSpec::Cuda(1));
    let MethodConfig::Stfpm(c) = cfg else { panic!("not STFPM") };
    assert_eq!((c.common.seed, c.epochs), (9, 3));
    assert_eq!(c.common.backbone.weights.as_deref(), Some(Path::new("/work/w/r18.safetensors")));
    // Multi-AD keeps its epochs under `train:`; a one-pass method ignores --epochs.
    let m = parse_file(&experiments().join("smoke.yaml"), Overrides { epochs: Some(2), device: Some(DeviceSpec::Cuda(0)), ..Overrides::default() }).unwrap();
    assert_eq!((m.epochs(), m.device()), (Some(2), DeviceSpec::Cuda(0)));
    assert!(m.to_yaml().contains("device: cuda:0"), "{}", m.to_yaml());
    let p = parse_file(&preset_file(&experiments(), "padim", "smoke"), Overrides { epochs: Some(2), ..Overrides::default() }).unwrap();
    assert_eq!((p.epochs(), p.device()), (None, DeviceSpec::Cpu));
}

#[test]
fn an_unknown_method_is_named_with_the_known_ones() {
    let e = parse("method: fastflow\n", Path::new("f.yaml"), Overrides::default(), Path::new("/")).err().unwrap().to_string();
    assert!(e.contains("f.yaml") && e.contains("fastflow") && e.contains("patchcore") && e.contains("mkd"), "{e}");
}

#[test]
fn a_misspelt_device_is_refused_with_the_key_and_the_choices() {
    let e = parse("method: padim\ndevice: gpu\n", Path::new("p.yaml"), Overrides::default(), Path::new("/")).err().unwrap().to_string();
    assert!(e.contains("p.yaml") && e.contains("`device`") && e.contains("cuda:N"), "{e}");
}

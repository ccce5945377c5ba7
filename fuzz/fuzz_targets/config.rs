//! Every method's experiment YAML: the registry's parser, which reads the
//! `method:` key and hands the text to that method's strict parser.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: multiad_fuzz::Capped = multiad_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz/experiment.yaml");
    if let Ok(cfg) = multiad_methods::parse(text, path, Default::default(), Path::new("/")) {
        // What `train` writes into config.yaml.
        let _ = cfg.to_yaml();
    }
});

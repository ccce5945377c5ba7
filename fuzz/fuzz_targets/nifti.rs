//! The NIfTI-1 reader on raw or gzip-compressed bytes (header and volume),
//! then what prep does with a volume: its axial axis and one slice.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: multiad_fuzz::Capped = multiad_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/volume.nii.gz");
    let Ok(v) = multiad_nifti::from_bytes(data, path) else { return };
    assert_eq!(v.data.len(), v.shape.iter().product::<usize>());
    if let Ok(shape) = v.shape3(path) {
        let axis = v.axial_axis();
        let (rows, cols, px) = v.slice(axis, shape[axis] / 2);
        assert_eq!(rows * cols, px.len());
    }
});

//! Image decoding and mask pairing: the first two bytes give the length of
//! the image part, the rest is its mask. Both decode (or are refused), the
//! image is resized and normalised, the mask is checked against the image's
//! size and binarised.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use multiad_data::{decode_bytes, image_to_chw, mask_values, ImageConfig};

#[global_allocator]
static ALLOC: multiad_fuzz::Capped = multiad_fuzz::Capped;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (image, mask) = data[2..].split_at(split);
    let cfg = ImageConfig::square(32);
    let Ok(img) = decode_bytes(image, Path::new("fuzz/image.png")) else { return };
    let mut out = vec![0f32; 3 * cfg.pixels()];
    image_to_chw(&img, &cfg, &mut out);
    if let Ok(m) = decode_bytes(mask, Path::new("fuzz/mask.png")) {
        if let Ok(v) = mask_values(&m, Path::new("fuzz/mask.png"), (img.width(), img.height()), &cfg) {
            assert_eq!(v.len(), cfg.pixels());
            assert!(v.iter().all(|&x| x <= 1));
        }
    }
});

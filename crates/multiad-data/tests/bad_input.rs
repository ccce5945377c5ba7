//! Bad input: each case must give an error that names the file and says what
//! is wrong, never a panic.

use std::path::Path;

use multiad_data::synth::{generate, SynthConfig};
use multiad_data::{load_mvtec, load_sample, BatchLoader, ImageConfig};

fn category(dir: &Path) -> std::path::PathBuf {
    let cfg = SynthConfig { category: "cat".into(), seed: 0, size: 48, train: 3, test_good: 2, test_per_defect: 1 };
    generate(dir, &cfg).unwrap();
    dir.join("cat")
}

/// Decodes the whole category, returning the first error's text.
fn decode_error(root: &Path) -> String {
    let ds = load_mvtec(root).unwrap();
    let mut all = ds.train.clone();
    all.extend(ds.test.clone());
    let loader = BatchLoader::new(all, ImageConfig::square(32), 2);
    for b in loader.iter() {
        if let Err(e) = b {
            return e.to_string();
        }
    }
    panic!("no error from {}", root.display());
}

#[test]
fn missing_train_good() {
    let t = tempfile::tempdir().unwrap();
    let c = category(t.path());
    std::fs::remove_dir_all(c.join("train/good")).unwrap();
    let e = load_mvtec(&c).unwrap_err().to_string();
    assert!(e.contains("train/good") && e.contains("missing"), "{e}");
}

#[test]
fn empty_train_good() {
    let t = tempfile::tempdir().unwrap();
    let c = category(t.path());
    for f in std::fs::read_dir(c.join("train/good")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let e = load_mvtec(&c).unwrap_err().to_string();
    assert!(e.contains("train/good") && e.contains("no images"), "{e}");
}

/// In a fresh category, replaces the image `file` with `corrupt(its bytes)`:
/// decoding the category then fails with an error that names `file` and
/// says `what`.
fn assert_corrupt_image_is_named(file: &str, corrupt: impl Fn(&[u8]) -> Vec<u8>, what: &str) {
    let t = tempfile::tempdir().unwrap();
    let c = category(t.path());
    let f = c.join(file);
    std::fs::write(&f, corrupt(&std::fs::read(&f).unwrap())).unwrap();
    let e = decode_error(&c);
    assert!(e.contains(file) && e.contains(what), "{e}");
}

#[test]
fn truncated_image() {
    assert_corrupt_image_is_named("train/good/001.png", |b| b[..b.len() / 2].to_vec(), "cannot decode");
}

#[test]
fn zero_byte_file() {
    assert_corrupt_image_is_named("test/good/000.png", |_| Vec::new(), "empty (0 bytes)");
}

#[test]
fn unreadable_format() {
    // A GIF (not a supported format) under a .png name, and plain text.
    assert_corrupt_image_is_named("train/good/000.png", |_| b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(), "not an image format");
    assert_corrupt_image_is_named("train/good/000.png", |_| b"hello, I am not an image".to_vec(), "not an image format");
}

#[test]
fn mask_size_differs_from_image() {
    let t = tempfile::tempdir().unwrap();
    let c = category(t.path());
    let m = c.join("ground_truth/hole/000_mask.png");
    image::GrayImage::new(40, 48).save(&m).unwrap();
    let ds = load_mvtec(&c).unwrap();
    let s = ds.test.iter().find(|s| s.mask.as_deref() == Some(m.as_path())).unwrap();
    let e = load_sample(s, &ImageConfig::square(32)).unwrap_err().to_string();
    assert!(e.contains("000_mask.png") && e.contains("40x48") && e.contains("48x48"), "{e}");
}

#[test]
fn missing_mask_and_orphan_mask() {
    let t = tempfile::tempdir().unwrap();
    let c = category(t.path());
    std::fs::rename(c.join("ground_truth/stain/000_mask.png"), c.join("ground_truth/stain/keep.bin")).unwrap();
    let e = load_mvtec(&c).unwrap_err().to_string();
    assert!(e.contains("stain/000.png") && e.contains("no mask"), "{e}");
    std::fs::rename(c.join("ground_truth/stain/keep.bin"), c.join("ground_truth/stain/000_mask.png")).unwrap();
    std::fs::copy(c.join("ground_truth/stain/000_mask.png"), c.join("ground_truth/stain/007_mask.png")).unwrap();
    let e = load_mvtec(&c).unwrap_err().to_string();
    assert!(e.contains("007_mask.png") && e.contains("no test image"), "{e}");
}

#[test]
fn missing_category() {
    let e = load_mvtec(Path::new("/nonexistent/category")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/category") && e.contains("not found"), "{e}");
}

/// CRC-32 (IEEE) of PNG chunks, bit by bit: enough for a test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A valid PNG whose header claims 2^20 x 2^20 pixels (2^40), with a
/// correct CRC: refused from the header, before a buffer is allocated.
#[test]
fn a_png_claiming_two_to_the_forty_pixels_is_refused_before_allocating() {
    let t = tempfile::tempdir().unwrap();
    let img = image::GrayImage::from_pixel(8, 8, image::Luma([7]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let mut png = png.into_inner();
    // Signature (8), length (4), "IHDR" (4), width, height, ...; CRC after 13 bytes of data.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&(1u32 << 20).to_be_bytes());
    png[20..24].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let p = t.path().join("huge.png");
    std::fs::write(&p, &png).unwrap();
    let e = multiad_data::decode(&p).unwrap_err().to_string();
    assert!(e.contains("huge.png") && e.contains("header claims an image larger than multiad decodes"), "{e}");
}

/// A palette PNG whose PLTE chunk is 5 bytes (not whole RGB entries), with
/// correct CRCs: the `png` crate would panic expanding it (found by fuzzing).
#[test]
fn a_png_palette_of_partial_entries_is_refused_not_a_panic() {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let crc = crc32(&c[4..]);
        c.extend_from_slice(&crc.to_be_bytes());
        c
    };
    // 1x1, bit depth 8, colour type 3 (palette); the one pixel is index 1.
    let ihdr = [0, 0, 0, 1, 0, 0, 0, 1, 8, 3, 0, 0, 0];
    // zlib stream of the scanline [filter 0, index 1], stored (no compression).
    let idat = [0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0x00, 0x01, 0x00, 0x03, 0x00, 0x02];
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"PLTE", &[10, 20, 30, 40, 50]), (b"IDAT", &idat), (b"IEND", &[])] {
        png.extend(chunk(kind, data));
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("palette.png");
    std::fs::write(&p, &png).unwrap();
    let e = multiad_data::decode(&p).unwrap_err().to_string();
    assert!(e.contains("palette.png") && e.contains("(PLTE chunk) is 5 bytes"), "{e}");
    // The same file with whole entries decodes: the check refuses only the fault.
    let mut good = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"PLTE", &[10, 20, 30, 40, 50, 60]), (b"IDAT", &idat), (b"IEND", &[])] {
        good.extend(chunk(kind, data));
    }
    std::fs::write(&p, &good).unwrap();
    let img = multiad_data::decode(&p).unwrap().to_rgb8();
    assert_eq!(img.get_pixel(0, 0).0, [40, 50, 60]);
}

/// A corrupt baseline JPEG (found by fuzzing, `fuzz/corpus/image/jpeg-dc-overflow`)
/// whose DC differences add up past what `zune-jpeg`'s `i32` DC arithmetic
/// holds. The product builds dependencies without overflow checks, as a
/// release build does (Cargo.toml, `profile.dev.package."*"`), so the sum wraps
/// and decoding ends in a result, never a panic; an error names the file.
#[test]
fn a_jpeg_whose_dc_sum_overflows_is_not_a_panic() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dc-overflow.jpg");
    match multiad_data::decode(&p) {
        Ok(img) => assert_eq!((img.width(), img.height()), (4104, 8), "the size its SOF0 header gives"),
        Err(e) => assert!(e.to_string().contains("dc-overflow.jpg"), "{e}"),
    }
}

//! Every supported file format decodes to the same RGB values.

use std::path::Path;

use image::{DynamicImage, ImageBuffer, Luma, Rgb, Rgba};
use multiad_data::{decode, load_image, ImageConfig, Normalization};

fn gradient() -> image::RgbImage {
    ImageBuffer::from_fn(16, 12, |x, y| Rgb([(x * 16) as u8, (y * 20) as u8, 128]))
}

fn plain(size: (u32, u32)) -> ImageConfig {
    ImageConfig { width: size.0, height: size.1, normalization: Normalization::None, mask_threshold: 127 }
}

fn rgb_of(path: &Path) -> Vec<f32> {
    load_image(path, &plain((16, 12))).unwrap().0
}

#[test]
fn png_jpeg_tiff_bmp_decode_alike() {
    let t = tempfile::tempdir().unwrap();
    let img = gradient();
    let expected: Vec<f32> = {
        let d = DynamicImage::ImageRgb8(img.clone()).to_rgb32f();
        let mut v = vec![0f32; 3 * 16 * 12];
        for (i, p) in d.pixels().enumerate() {
            for c in 0..3 {
                v[c * 192 + i] = p.0[c];
            }
        }
        v
    };
    for ext in ["png", "tiff", "bmp"] {
        let p = t.path().join(format!("a.{ext}"));
        img.save(&p).unwrap();
        assert_eq!(rgb_of(&p), expected, "{ext}");
    }
    // JPEG is lossy: close, not equal.
    let p = t.path().join("a.jpg");
    img.save(&p).unwrap();
    let got = rgb_of(&p);
    let err = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 0.08, "jpeg max error {err}");
    // The format comes from the content: a PNG named .jpg still decodes.
    let p = t.path().join("really_png.jpg");
    std::fs::copy(t.path().join("a.png"), &p).unwrap();
    assert_eq!(rgb_of(&p), expected);
}

#[test]
fn sixteen_bit_gray_rgba_and_palette_png() {
    let t = tempfile::tempdir().unwrap();
    // 16-bit grey: 65535 -> 1.0, 0 -> 0.0, replicated over RGB.
    let g16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(4, 2, |x, _| Luma([if x < 2 { 0 } else { 65535 }]));
    let p = t.path().join("g16.png");
    g16.save(&p).unwrap();
    let (v, size) = load_image(&p, &plain((4, 2))).unwrap();
    assert_eq!(size, (4, 2));
    assert_eq!(&v[0..4], &[0.0, 0.0, 1.0, 1.0]);
    assert_eq!(&v[8..12], &[0.0, 0.0, 1.0, 1.0]);
    assert!(matches!(decode(&p).unwrap(), DynamicImage::ImageLuma16(_)));

    // RGBA: alpha is dropped, colour kept.
    let rgba: ImageBuffer<Rgba<u8>, Vec<u8>> = ImageBuffer::from_pixel(2, 2, Rgba([255, 0, 51, 10]));
    let p = t.path().join("rgba.png");
    rgba.save(&p).unwrap();
    let (v, _) = load_image(&p, &plain((2, 2))).unwrap();
    assert_eq!(v, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.2, 0.2, 0.2]);

    // Palette PNG, written with the png crate: indices 0/1 -> red/blue.
    let p = t.path().join("pal.png");
    {
        let f = std::fs::File::create(&p).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 1]).unwrap();
    }
    let (v, _) = load_image(&p, &plain((2, 1))).unwrap();
    assert_eq!(v, vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn resize_and_imagenet_normalisation() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("flat.png");
    ImageBuffer::from_pixel(90, 90, Rgb([124u8, 116, 104])).save(&p).unwrap();
    let cfg = ImageConfig::square(32);
    let (v, size) = load_image(&p, &cfg).unwrap();
    assert_eq!(size, (90, 90));
    assert_eq!(v.len(), 3 * 32 * 32);
    // (124/255 - 0.485)/0.229 etc: a flat image stays flat through resizing.
    let want = [(124.0 / 255.0 - 0.485) / 0.229, (116.0 / 255.0 - 0.456) / 0.224, (104.0 / 255.0 - 0.406) / 0.225];
    for c in 0..3 {
        for &x in &v[c * 1024..(c + 1) * 1024] {
            assert!((x - want[c]).abs() < 1e-4, "channel {c}: {x} vs {}", want[c]);
        }
    }
}

#[test]
fn masks_stay_binary_through_resizing() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("m.png");
    // Left half 200 (anomalous), right half 100 (below the 127 threshold).
    ImageBuffer::from_fn(64, 64, |x, _| Luma([if x < 32 { 200u8 } else { 100 }])).save(&p).unwrap();
    let m = multiad_data::load_mask(&p, (64, 64), &ImageConfig::square(16)).unwrap();
    assert_eq!(m.len(), 256);
    for y in 0..16 {
        for x in 0..16 {
            assert_eq!(m[y * 16 + x], u8::from(x < 8));
        }
    }
}

/// BMAD wrote its Brain slices with a grey colour map as RGBA PNGs (R = G = B,
/// opaque alpha): they must decode to exactly the intensities of the same
/// slice saved as 8-bit grey, resized or not.
#[test]
fn grey_colour_mapped_rgba_equals_the_grey_image() {
    let t = tempfile::tempdir().unwrap();
    let g: image::GrayImage = ImageBuffer::from_fn(40, 30, |x, y| Luma([((x * 7 + y * 3) % 256) as u8]));
    let rgba: ImageBuffer<Rgba<u8>, Vec<u8>> = ImageBuffer::from_fn(40, 30, |x, y| {
        let v = g.get_pixel(x, y).0[0];
        Rgba([v, v, v, 255])
    });
    let (pg, pc) = (t.path().join("g.png"), t.path().join("c.png"));
    g.save(&pg).unwrap();
    rgba.save(&pc).unwrap();
    for size in [(40, 30), (16, 16)] {
        let cfg = ImageConfig { width: size.0, height: size.1, ..ImageConfig::default() };
        let (a, _) = load_image(&pg, &cfg).unwrap();
        let (b, _) = load_image(&pc, &cfg).unwrap();
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 0.02, "{size:?}: {worst}");
    }
}

//! Decoding image and mask files into the arrays the models consume.

use std::io::Cursor;
use std::path::Path;

use fast_image_resize as fr;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader};

use crate::error::{DataError, Result};

/// Per-channel mean and standard deviation of ImageNet, on [0, 1] RGB values:
/// what every ImageNet-pretrained backbone expects.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How pixel values are scaled after resizing.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// (x - mean) / std with ImageNet statistics.
    #[default]
    Imagenet,
    /// Plain [0, 1] RGB.
    None,
}

/// What every image and mask becomes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    pub height: u32,
    pub width: u32,
    pub normalization: Normalization,
    /// A mask pixel is anomalous when its 8-bit grey value is above this.
    pub mask_threshold: u8,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self { height: 256, width: 256, normalization: Normalization::Imagenet, mask_threshold: 127 }
    }
}

impl ImageConfig {
    pub fn square(size: u32) -> Self {
        Self { height: size, width: size, ..Self::default() }
    }

    pub fn pixels(&self) -> usize {
        self.height as usize * self.width as usize
    }
}

/// The largest image side multiad decodes, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 1 << 15;
/// The most memory one decoded image may take (1 GiB: a 16384x16384 RGBA
/// image). A header that claims more is refused before anything is allocated.
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Reads and decodes any supported image file (PNG 8/16-bit gray/RGB/RGBA/
/// palette, JPEG, TIFF, BMP). The format is taken from the file's content, not
/// its extension.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| DataError::file(path, format!("cannot read file: {e}")))?;
    decode_bytes(&bytes, path)
}

/// [`decode`] on bytes already read; `path` names them in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(DataError::file(path, "file is empty (0 bytes)"));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| DataError::file(path, format!("cannot read file: {e}")))?;
    let Some(format) = reader.format() else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(DataError::file(
            path,
            format!("not an image format multiad can read (supported: PNG, JPEG, TIFF, BMP; file starts with bytes {})", head.join(" ")),
        ));
    };
    if format == image::ImageFormat::Png {
        check_png_palette(bytes).map_err(|m| DataError::file(path, m))?;
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Unsupported(_) => {
            DataError::file(path, format!("not an image format multiad can read (it looks like {format:?}; supported: PNG, JPEG, TIFF, BMP)"))
        }
        image::ImageError::Limits(l) => DataError::file(
            path,
            format!(
                "{format:?} header claims an image larger than multiad decodes ({l}; at most {MAX_IMAGE_SIDE} px a side and {} MiB): corrupt, or far too large",
                MAX_IMAGE_BYTES >> 20
            ),
        ),
        e => DataError::file(path, format!("cannot decode {format:?} image (truncated or corrupt?): {e}")),
    })
}

/// Refuses a PNG whose palette (`PLTE`) length is not a multiple of 3, an
/// error by the PNG specification (11.2.3). The `png` crate (0.18.1) accepts
/// such a chunk and then panics while expanding the palette; fuzzing found
/// it. Only the chunk list is walked: anything else is the decoder's to judge.
fn check_png_palette(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut at = 8; // the signature
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        match &head[4..8] {
            b"PLTE" if len % 3 != 0 => {
                return Err(format!("invalid PNG: its palette (PLTE chunk) is {len} bytes, not a whole number of 3-byte RGB entries"));
            }
            b"IDAT" | b"IEND" => break, // a palette must come before the image data
            _ => {}
        }
        at = at.saturating_add(12).saturating_add(len); // length, type, data, CRC
    }
    Ok(())
}

/// Decodes, resizes (bilinear with antialiasing, like PIL's) and normalises an
/// image into a CHW `f32` array of `3 * height * width` values. Also returns
/// the original (width, height) so that masks can be checked against it.
pub fn load_image(path: &Path, cfg: &ImageConfig) -> Result<(Vec<f32>, (u32, u32))> {
    let img = decode(path)?;
    let original = (img.width(), img.height());
    let mut out = vec![0f32; 3 * cfg.pixels()];
    image_to_chw(&img, cfg, &mut out);
    Ok((out, original))
}

/// Resampling filter for images: bilinear with antialiasing when shrinking
/// (the kernel widens with the scale factor), as PIL's and torchvision's
/// `Resize` do, so that our inputs match what PyTorch code feeds its models.
fn bilinear() -> fr::ResizeOptions {
    fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
}

/// Resizes an interleaved buffer of `pixel` type; `None` if the library
/// rejects the buffer (it never should for buffers we built).
fn resize_raw(src: &[u8], size: (u32, u32), to: (u32, u32), pixel: fr::PixelType) -> Option<Vec<u8>> {
    let src = fr::images::ImageRef::new(size.0, size.1, src, pixel).ok()?;
    let mut dst = fr::images::Image::new(to.0, to.1, pixel);
    fr::Resizer::new().resize(&src, &mut dst, &bilinear()).ok()?;
    Some(dst.into_vec())
}

/// The image as `height * width` RGB triples in [0, 1], resized. 8-bit images
/// are resized in 8 bits (like PIL), grey ones before colour is replicated;
/// deeper images in f32.
fn resized_rgb(img: &DynamicImage, to: (u32, u32)) -> Vec<[f32; 3]> {
    let size = (img.width(), img.height());
    let same = size == to;
    match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageLumaA8(_) => {
            let g = img.to_luma8().into_raw();
            let g = if same { Some(g) } else { resize_raw(&g, size, to, fr::PixelType::U8) };
            if let Some(g) = g {
                return g.iter().map(|&v| [v as f32 / 255.0; 3]).collect();
            }
        }
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => {
            let c = img.to_rgb8().into_raw();
            let c = if same { Some(c) } else { resize_raw(&c, size, to, fr::PixelType::U8x3) };
            if let Some(c) = c {
                return c.chunks_exact(3).map(|p| [p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0]).collect();
            }
        }
        _ => {}
    }
    // 16-bit and float images, and the (theoretical) fallback.
    let f = img.to_rgb32f();
    let f = if same { f } else { image::imageops::resize(&f, to.0, to.1, image::imageops::FilterType::Triangle) };
    f.pixels().map(|p| p.0).collect()
}

/// Writes the resized, normalised image into `out` (CHW).
pub fn image_to_chw(img: &DynamicImage, cfg: &ImageConfig, out: &mut [f32]) {
    let rgb = resized_rgb(img, (cfg.width, cfg.height));
    let plane = cfg.pixels();
    let (mean, std) = match cfg.normalization {
        Normalization::Imagenet => (IMAGENET_MEAN, IMAGENET_STD),
        Normalization::None => ([0.0; 3], [1.0; 3]),
    };
    for (i, px) in rgb.iter().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c].clamp(0.0, 1.0) - mean[c]) / std[c];
        }
    }
}

/// Decodes a mask, checks it has the image's size, binarises it (grey value >
/// threshold) and resizes it with nearest-neighbour so it stays binary.
/// Returns `height * width` values of 0 or 1.
pub fn load_mask(path: &Path, image_size: (u32, u32), cfg: &ImageConfig) -> Result<Vec<u8>> {
    mask_values(&decode(path)?, path, image_size, cfg)
}

/// [`load_mask`] on a decoded mask; `path` names it in errors.
pub fn mask_values(img: &DynamicImage, path: &Path, image_size: (u32, u32), cfg: &ImageConfig) -> Result<Vec<u8>> {
    if (img.width(), img.height()) != image_size {
        return Err(DataError::file(
            path,
            format!("mask is {}x{} but its image is {}x{}; a mask must have its image's size", img.width(), img.height(), image_size.0, image_size.1),
        ));
    }
    let mut grey = img.to_luma8();
    for p in grey.pixels_mut() {
        p.0[0] = u8::from(p.0[0] > cfg.mask_threshold);
    }
    let grey = if grey.dimensions() == (cfg.width, cfg.height) { grey } else { image::imageops::resize(&grey, cfg.width, cfg.height, FilterType::Nearest) };
    Ok(grey.into_raw())
}

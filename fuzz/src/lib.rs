//! Shared by the fuzz targets: an allocator that aborts on any single
//! allocation above [`LIMIT`], so that a crafted size field (a PNG or NIfTI
//! header claiming 2^40 pixels) shows up as a crash with its input saved,
//! not as a slow run that happens to fit in memory.

use std::alloc::{GlobalAlloc, Layout, System};

/// multiad decodes images of up to 1 GiB (`multiad_data::MAX_IMAGE_BYTES`);
/// nothing a fuzz input of a few KiB drives should need more than that.
pub const LIMIT: usize = (1 << 30) + (1 << 20);

pub struct Capped;

fn check(size: usize) {
    if size > LIMIT {
        eprintln!("fuzz: an allocation of {size} bytes (limit {LIMIT}) from a crafted size");
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        check(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        check(l.size());
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        check(new);
        unsafe { System.realloc(p, l, new) }
    }
}

/// Tiny valid PNGs for building trees and seeds: a `side` x `side` grey image
/// with a diagonal gradient, or a binary mask with a bright square.
pub fn png(side: u32, mask: bool) -> Vec<u8> {
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        let v = if mask { if x > side / 4 && x < side / 2 && y > side / 4 && y < side / 2 { 255 } else { 0 } } else { ((x + y) * 8) as u8 };
        image::Luma([v])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encoding a small PNG in memory");
    out.into_inner()
}

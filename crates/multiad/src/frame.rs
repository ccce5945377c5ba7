//! `reflect_pad`: the image framed by its own mirror image before the
//! teacher and the student see it, and their critical layers cropped back
//! to the cells of the image.
//!
//! Why: without it, every network pads with zeros, and a pretrained teacher
//! answers that artificial edge strongly (EfficientNet-Lite0's stem and
//! depthwise convolutions: its M1 features are larger in the outermost
//! cells than inside), which the student imitates worst of all positions.
//! With a mirrored frame both networks see image-like content wherever a
//! cell of the image reaches past its edge, and zero padding only happens
//! outside the cells that are compared. Eqs 7 and 13 are unchanged; they
//! are computed on the image's cells only.

use candle_core::{Result, Tensor};

/// The padded input (N, C, H + 2p, W + 2p); the identity for p = 0.
pub fn frame(x: &Tensor, pad: usize) -> Result<Tensor> {
    multiad_nn::reflect_pad2d(x, pad)
}

/// The critical layers M1..M4 (strides 4, 8, 16, 32) of a framed input,
/// cropped to the image's cells. `pad` is a multiple of 32 (checked by the
/// config), so the crop is a whole number of cells at every stride and the
/// cells keep the grid they have without the frame.
pub fn crop(feats: Vec<Tensor>, pad: usize) -> Result<Vec<Tensor>> {
    if pad == 0 {
        return Ok(feats);
    }
    feats
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let cells = pad / (4 << i);
            let (_, _, h, w) = f.dims4()?;
            f.narrow(2, cells, h - 2 * cells)?.narrow(3, cells, w - 2 * cells)?.contiguous()
        })
        .collect()
}

//! The pieces candle 0.11 lacks for anomaly-detection models, each with a
//! backward pass:
//!
//! * [`resample`]: bilinear resizing (PyTorch `interpolate(mode="bilinear",
//!   align_corners=False)`) and Gaussian smoothing, written as separable
//!   linear maps `A · X · Bᵀ` so that candle's matmul gives both the forward
//!   and the backward pass, on every device candle supports;
//! * [`affine`]: the per-channel tail of a layer (folded batch norm or bias,
//!   residual add, ReLU / ReLU6) as one pass;
//! * [`cosine`]: the per-position cosine distance of two feature maps
//!   (knowledge-distillation losses and anomaly maps) as one op;
//! * [`conv`]: convolution as im2col + matrix product in the forward pass
//!   and both backward passes (candle's CPU convolution spent half a student
//!   step in its im2col, and its input gradient is a direct loop), built from
//!   a [`ConvSpec`];
//! * [`depthwise`]: depthwise convolution (EfficientNet's), a direct kernel
//!   instead of candle's one convolution per channel;
//! * [`batch_norm`]: batch normalisation whose training pass is one fused
//!   op with its own backward, instead of about ten candle ops;
//! * [`blocks`]: ResNet's trainable units (convolution + batch norm, the
//!   projection shortcut) for the students and decoders trained here;
//! * [`deconv`]: the 2x2 stride-2 transposed convolution of decoders, as a
//!   1x1 convolution and a pixel shuffle;
//! * [`guided`]: the ReLU of guided backpropagation (saliency maps);
//! * [`pool`]: max pooling with padding and kernel != stride (the ResNet stem),
//!   as a custom op with its own backward;
//! * [`device`]: the `device:` key and `--device` (cpu, cuda, cuda:N), with
//!   errors that say what to do;
//! * [`generic`]: the compositions of candle's ops that padded max pooling
//!   and "SAME" depthwise convolution take off the CPU (every op here
//!   has such a path; [`device::with_generic_ops`] runs them on the CPU);
//! * [`params`]: a parameter store whose initialisation is fixed by a seed
//!   (candle's CPU random numbers cannot be seeded), saved to and loaded from
//!   safetensors with errors that name the tensor;
//! * [`allocator`]: malloc settings that keep freed activations for reuse,
//!   applied with the thread count by [`runtime::set_default_threads`];
//! * [`adam`]: Adam whose moment estimates can be checkpointed and restored;
//! * [`sgd`]: SGD with momentum and weight decay (PyTorch's), checkpointable;
//! * [`optimiser`]: the one face both show the training loops;
//! * [`spectral_norm`]: a weight over its largest singular value, by power
//!   iteration with checkpointed state (a discriminator's Lipschitz bound);
//! * [`sgemm`]: the f32 matrix products under the convolutions, with our own
//!   AVX-512 / AVX2 kernels where the CPU has them.

pub mod adam;
pub mod affine;
pub mod allocator;
pub mod batch_norm;
pub mod blocks;
pub mod conv;
pub mod cosine;
mod cpu;
pub mod deconv;
pub mod depthwise;
pub mod device;
pub mod generic;
pub mod guided;
pub mod optimiser;
pub mod params;
pub mod pool;
pub mod resample;
pub mod runtime;
pub mod sgd;
pub mod sgemm;
pub mod spectral_norm;

pub use adam::{Adam, AdamConfig};
pub use affine::{channel_affine, Activation};
pub use batch_norm::BatchNorm;
pub use blocks::{ConvBn, Shortcut};
pub use conv::{conv2d, conv2d_opts, Conv2d, ConvSpec};
pub use cosine::cosine_distance_map;
pub use deconv::{conv_transpose2x2, ConvTranspose2x2};
pub use depthwise::{depthwise_conv2d, depthwise_conv2d_same};
pub use device::DeviceSpec;
pub use guided::guided_relu;
pub use optimiser::Optimiser;
pub use params::ParamStore;
pub use pool::max_pool2d;
pub use resample::{gaussian_blur, gaussian_kernel_size, reflect_pad2d, resize_bilinear, resize_bilinear_centred};
pub use runtime::set_default_threads;

use candle_core::{Result, Tensor};

/// Σ of same-shaped terms in order, left to right (a loss or a map summed
/// over layers); `what` names the terms in the error when there are none.
pub fn sum_terms(terms: impl IntoIterator<Item = Result<Tensor>>, what: &str) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for t in terms {
        let t = t?;
        total = Some(match total {
            Some(acc) => (acc + t)?,
            None => t,
        });
    }
    total.ok_or_else(|| candle_core::Error::Msg(format!("no {what} to sum")))
}
pub use sgd::{Sgd, SgdConfig};
pub use spectral_norm::SpectralNorm;

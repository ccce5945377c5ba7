//! Batches of decoded images as candle tensors. Decoding runs on the rayon
//! pool, one batch ahead of the consumer on a background thread, so that at
//! most two batches are in memory and decoding overlaps with compute.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::decode::{load_image, load_mask, ImageConfig};
use crate::error::{DataError, Result};
use crate::sample::{Label, Sample};

/// One decoded sample: CHW image and HW binary mask (all zeros when the sample
/// has no mask).
#[derive(Debug, Clone)]
pub struct LoadedSample {
    pub image: Vec<f32>,
    pub mask: Vec<u8>,
    pub original_size: (u32, u32),
}

/// Decodes one sample, checking its mask against its image.
pub fn load_sample(sample: &Sample, cfg: &ImageConfig) -> Result<LoadedSample> {
    let (image, original_size) = load_image(&sample.image, cfg)?;
    let mask = match &sample.mask {
        Some(m) => load_mask(m, original_size, cfg)?,
        None => vec![0; cfg.pixels()],
    };
    Ok(LoadedSample { image, mask, original_size })
}

/// A batch: images `(B, 3, H, W)` f32 on the CPU, masks as `B * H * W` bytes.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub masks: Vec<u8>,
    /// Indices into the loader's sample list.
    pub indices: Vec<usize>,
    pub labels: Vec<Label>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Masks as a `(B, 1, H, W)` f32 tensor of 0 and 1.
    pub fn mask_tensor(&self, cfg: &ImageConfig) -> Result<Tensor> {
        let v: Vec<f32> = self.masks.iter().map(|&m| m as f32).collect();
        Tensor::from_vec(v, (self.len(), 1, cfg.height as usize, cfg.width as usize), &Device::Cpu)
            .map_err(|e| DataError::Other(format!("building mask tensor: {e}")))
    }
}

/// Iterates over a sample list in batches.
#[derive(Debug, Clone)]
pub struct BatchLoader {
    samples: Arc<Vec<Sample>>,
    cfg: ImageConfig,
    batch_size: usize,
    order: Vec<usize>,
    drop_last: bool,
    pool: Option<Arc<rayon::ThreadPool>>,
    device: Device,
}

impl BatchLoader {
    pub fn new(samples: Vec<Sample>, cfg: ImageConfig, batch_size: usize) -> Self {
        let order = (0..samples.len()).collect();
        Self { samples: Arc::new(samples), cfg, batch_size: batch_size.max(1), order, drop_last: false, pool: None, device: Device::Cpu }
    }

    /// Visits samples in an order fixed by `seed` (one order per epoch: pass
    /// e.g. `base_seed + epoch`).
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.order = (0..self.samples.len()).collect();
        self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        self
    }

    /// Skips a final incomplete batch (training with batch norm dislikes a
    /// batch of one).
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }

    /// Decodes on this thread pool instead of rayon's global one (to bound
    /// the threads used next to a model's own, or to benchmark).
    pub fn with_pool(mut self, pool: Arc<rayon::ThreadPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Puts each batch's images on `device` (a GPU), in the background
    /// thread, so the copy overlaps the model's work on the last batch.
    pub fn on_device(mut self, device: &Device) -> Self {
        self.device = device.clone();
        self
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.order.len() / self.batch_size
        } else {
            self.order.len().div_ceil(self.batch_size)
        }
    }

    /// Starts decoding in the background and yields batches in order. The
    /// first error stops the iteration after it is yielded.
    pub fn iter(&self) -> BatchIter {
        let (tx, rx) = sync_channel(1);
        let me = self.clone();
        std::thread::spawn(move || {
            for b in 0..me.num_batches() {
                let idx: Vec<usize> = me.order[b * me.batch_size..((b + 1) * me.batch_size).min(me.order.len())].to_vec();
                let res = match &me.pool {
                    Some(p) => p.install(|| me.decode_batch(idx)),
                    None => me.decode_batch(idx),
                };
                let failed = res.is_err();
                if tx.send(res).is_err() || failed {
                    return;
                }
            }
        });
        BatchIter { rx }
    }

    fn decode_batch(&self, indices: Vec<usize>) -> Result<Batch> {
        let loaded: Vec<LoadedSample> = indices.par_iter().map(|&i| load_sample(&self.samples[i], &self.cfg)).collect::<Result<_>>()?;
        let (h, w) = (self.cfg.height as usize, self.cfg.width as usize);
        let mut images = Vec::with_capacity(loaded.len() * 3 * h * w);
        let mut masks = Vec::with_capacity(loaded.len() * h * w);
        for l in loaded {
            images.extend_from_slice(&l.image);
            masks.extend_from_slice(&l.mask);
        }
        let images = Tensor::from_vec(images, (indices.len(), 3, h, w), &Device::Cpu)
            .and_then(|t| t.to_device(&self.device))
            .map_err(|e| DataError::Other(format!("building image tensor: {e}")))?;
        let labels = indices.iter().map(|&i| self.samples[i].label).collect();
        Ok(Batch { images, masks, indices, labels })
    }
}

/// Batches as they finish decoding.
pub struct BatchIter {
    rx: Receiver<Result<Batch>>,
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

/// Decodes every sample and its mask once (the image decodes, the mask
/// decodes and has the image's size) and lists every file that fails, in
/// the samples' order: a check to run before hours of training, so that a
/// bad file is not found minutes in, one at a time.
pub fn check_all(samples: &[Sample], cfg: &ImageConfig) -> Result<()> {
    let failures: Vec<DataError> = samples.par_iter().map(|s| load_sample(s, cfg).err()).collect::<Vec<_>>().into_iter().flatten().collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(DataError::Many { checked: samples.len(), failures })
    }
}

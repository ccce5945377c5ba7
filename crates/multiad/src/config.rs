//! The experiment file: every knob of the method with the paper's value (or,
//! where the paper is silent, a documented choice) as default. Unknown keys
//! and impossible values are errors that name the key.

use std::path::PathBuf;

use multiad_detector::config::positive;
use multiad_detector::ConfigFile;
use multiad_nn::DeviceSpec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The detector this file configures; always `multiad` here (other
    /// methods have their own files, see docs/methods.md).
    pub method: String,
    /// A name for the scale preset this file describes (`paper`, `cpu`, `smoke`).
    pub preset: String,
    /// Fixes every random choice: initialisation, shuffling, dropout.
    pub seed: u64,
    /// Where it runs: `cpu`, `cuda` or `cuda:N` (`--device` overrides it).
    pub device: DeviceSpec,
    /// Input side (square); must be divisible by 32 (the deepest stride).
    pub image_size: u32,
    /// Pixels of mirrored image (PyTorch's `reflect` padding) put round
    /// every image before the teacher and the student, whose critical
    /// layers are then cropped back to the image's cells (`frame.rs`). 0 =
    /// none: the networks zero-pad the image itself, as the paper's
    /// networks do. A multiple of 32 (the deepest stride) below `image_size`.
    pub reflect_pad: u32,
    /// Which networks `reflect_pad` frames: `both` (the same cells compared
    /// with the same context), or the `teacher` only, whose targets then
    /// describe mirrored image where its receptive fields leave the image,
    /// while the student, trained from scratch, pads with zeros as without
    /// a frame (and costs no more than without one).
    pub reflect_pad_networks: FramedNetworks,
    pub teacher: TeacherConfig,
    pub student: StudentConfig,
    pub discriminator: DiscriminatorConfig,
    pub train: TrainConfig,
    pub inference: InferenceConfig,
}

/// The paper's setting: what a key left out of the file gets.
impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            method: crate::METHOD.into(),
            preset: String::new(),
            seed: 0,
            device: DeviceSpec::Cpu,
            image_size: 256,
            reflect_pad: 0,
            reflect_pad_networks: FramedNetworks::Both,
            teacher: TeacherConfig::default(),
            student: StudentConfig::default(),
            discriminator: DiscriminatorConfig::default(),
            train: TrainConfig::default(),
            inference: InferenceConfig::default(),
        }
    }
}

/// `reflect_pad_networks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FramedNetworks {
    Both,
    Teacher,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherKind {
    /// torchvision WideResNet-50-2 (the paper's teacher).
    WideResnet50_2,
    Resnet18,
    /// EfficientNet-Lite0 (the `cpu` preset's teacher).
    EfficientnetLite0,
    /// A small randomly initialised, frozen network (the `smoke` preset): no
    /// weights needed, for tests and CI only.
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeacherConfig {
    pub kind: TeacherKind,
    /// A local safetensors file; when absent, the Hugging Face cache is searched.
    pub weights: Option<PathBuf>,
    /// Which of the backbone's feature levels are the critical layers
    /// M1..M4 (0-based indices into its levels). Default: all four ResNet
    /// layers; stages 1, 2, 4, 6 of EfficientNet-Lite0 (strides 4, 8, 16, 32).
    pub layers: Option<Vec<usize>>,
    /// Channels of the random teacher's four levels.
    pub random_channels: Vec<usize>,
}

/// The paper's teacher, WideResNet-50-2, from the Hugging Face cache.
impl Default for TeacherConfig {
    fn default() -> Self {
        Self { kind: TeacherKind::WideResnet50_2, weights: None, layers: None, random_channels: vec![16, 32, 64, 128] }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudentConfig {
    /// The student's network: `bottleneck` (default), Table 1's improved
    /// WideResNet; `mbconv`, EfficientNet-Lite0's stage table (depthwise
    /// MBConv blocks, TF "SAME" padding, ReLU6) trained from scratch with
    /// Eqs 2-4's SE in every block, so that a Lite0 teacher is imitated by a
    /// network of its own shape, as the paper pairs a WideResNet student
    /// with a WideResNet teacher. `mbconv` takes kernels, strides, widths
    /// and repeats from that table: `stem_channels`, `blocks` and `widths`
    /// are not read, and it needs `dilation: false` (its depthwise kernels
    /// are not dilated).
    pub layout: StudentLayout,
    /// `layout: mbconv` only: the expansion ratio of the blocks Lite0
    /// expands six-fold (all but the first stage's), so that the student
    /// can be narrower than its teacher, as the `cpu` bottleneck student is
    /// narrower than WideResNet. Default 6, Lite0's own.
    pub mbconv_expand: usize,
    /// Channels of the 7x7 stem convolution (64 in WideResNet).
    pub stem_channels: usize,
    /// Bottlenecks per stage (WideResNet-50: 3, 4, 6, 3).
    pub blocks: Vec<usize>,
    /// Inner width of each stage's bottlenecks (WideResNet-50-2: 128, 256, 512, 1024).
    /// Output channels always equal the teacher's critical layers'.
    pub widths: Vec<usize>,
    /// Dilated 3x3 convolutions, rates 1, 2, 4, 8 by stage (Eq 1).
    pub dilation: bool,
    /// Squeeze-and-excitation in every bottleneck (Eqs 2-4). "SE off" in Table 4.
    pub se: bool,
    /// SE reduction ratio r: hidden width = max(1, C / r).
    pub se_reduction: usize,
    /// Feature fusion of each stage with the upsampled next one (Eq 5).
    pub fusion: bool,
    /// Leave out the last ReLU of each critical-layer output (Eq 5's, and the
    /// final block's of a stage that is compared unfused). The paper's
    /// WideResNet teacher ends its layers in a ReLU, so ReLU outputs can
    /// match it; EfficientNet's stages end in a linear projection, about
    /// half of whose values are negative, which a ReLU output can never
    /// reach (cosine at most ~0.7). Off (the paper's Eq 5) by default; on in
    /// the `cpu` preset (Lite0 teacher), chosen on brain_lgg_bmad's valid
    /// split once the grids were aligned (`student.padding`,
    /// `docs/multiad.md`, "Grid alignment").
    pub linear_outputs: bool,
    /// Where the stride-2 layers put their padding, and so where each
    /// critical-layer cell sits on the image. `auto` (default) takes the
    /// teacher's convention, so that student cell (i, j) and teacher cell
    /// (i, j) describe the same pixels: `same` for EfficientNet (TensorFlow
    /// "SAME": the padding goes after, a stride-s cell is centred on pixel
    /// s*i + s - 1), `symmetric` for the torchvision ResNets and the random
    /// teacher (centred on s*i). With the other convention the student must
    /// imitate features centred almost a whole cell away (s - 1 px at
    /// stride s), which it cannot do where the image ends.
    pub padding: StudentPadding,
}

/// See [`StudentConfig::layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StudentLayout {
    #[default]
    Bottleneck,
    Mbconv,
}

/// See [`StudentConfig::padding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StudentPadding {
    #[default]
    Auto,
    Symmetric,
    Same,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            layout: StudentLayout::Bottleneck,
            mbconv_expand: 6,
            stem_channels: 64,
            blocks: vec![3, 4, 6, 3],
            widths: vec![128, 256, 512, 1024],
            dilation: true,
            se: true,
            se_reduction: 16,
            fusion: true,
            linear_outputs: false,
            padding: StudentPadding::Auto,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscInput {
    /// Channel-wise L2-normalised features (what the distillation loss compares).
    Normalized,
    /// Raw features, as Eq 10 writes D(F_T).
    Raw,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscriminatorConfig {
    /// The adversarial part (Eqs 9-12). "D off" in Table 4.
    pub enabled: bool,
    /// Filters of the four 3x3 convolutions (paper: 128, 256, 512, 1024).
    pub channels: Vec<usize>,
    /// Dropout before the FC layer (the paper gives no rate).
    pub dropout: f64,
    /// Every critical layer is average-pooled to grid x grid (at most the
    /// deepest layer's size) and the levels concatenated: D's input.
    pub grid: usize,
    pub input: DiscInput,
    /// λ of Eq 12. The paper gives no value; 0.01 did best on pixel AUROC
    /// and AUPRO in a smoke-scale sweep (docs/multiad.md), while 0.1 let the
    /// adversarial term swamp the distillation loss.
    pub lambda: f64,
    /// LeakyReLU slope (Eq 9).
    pub leaky_slope: f64,
    /// Biases on D's convolutions. Off: batch norm follows each one, so a
    /// bias has gradient 0 and Adam only steps it on rounding noise
    /// (docs/multiad.md, "Differential test"). On: D as built before
    /// 2026-12-02, to reproduce runs from then (the biases also take draws
    /// from D's initialisation stream, so every D weight differs).
    pub conv_bias: bool,
    /// D takes its Adam step on every k-th batch only (1: every batch, as
    /// Algorithm 1). The student is updated on every batch against the D of
    /// the moment. Steps count from the run's first batch, so a resumed run
    /// keeps the schedule.
    pub update_every: usize,
    /// One-sided label smoothing (Salimans et al. 2016): D's target for the
    /// teacher's features is 1 − ε instead of 1 in L_D (Eq 10); the student's
    /// L_adv (Eq 11) is unchanged. 0: the paper's BCE.
    pub label_smoothing: f64,
    /// λ of Eq 12 ramps linearly from 0 to `lambda` over this many epochs
    /// (per batch: step t of the run uses λ·min(1, t / (epochs·batches))),
    /// so that D has learned something before the student follows it.
    /// 0: the full λ from the first step, as in the paper.
    pub lambda_warmup_epochs: usize,
    /// Spectral normalisation of D's convolutions and FC layer (a Lipschitz
    /// bound on D; see `discriminator.rs` for what batch norm leaves of it).
    /// The paper has none. A gradient penalty is not offered: it needs
    /// second-order gradients, and the backward passes of our fused
    /// convolution and batch-norm ops are not themselves differentiable.
    pub spectral_norm: bool,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            channels: vec![128, 256, 512, 1024],
            dropout: 0.3,
            grid: 8,
            input: DiscInput::Normalized,
            lambda: 0.01,
            leaky_slope: 0.2,
            conv_bias: false,
            update_every: 1,
            label_smoothing: 0.0,
            lambda_warmup_epochs: 0,
            spectral_norm: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Adam learning rate of the student (paper: 0.001).
    pub lr: f64,
    /// Adam learning rate of the discriminator (paper: 0.001).
    pub disc_lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Teacher features of training images are computed once and kept, up to
    /// this many MiB (the teacher is frozen; flipped batches bypass the cache).
    pub teacher_cache_mib: usize,
    /// Random flips of whole training batches (not in the paper, which names
    /// no augmentation): `none` (default, the paper), `horizontal`,
    /// `vertical` or `both`. Each batch is flipped with probability 1/2 per
    /// allowed axis, drawn from the seed and the epoch, so resumption stays
    /// exact.
    pub flips: Flips,
    /// Random zoom of whole training batches (not in the paper, which names
    /// no augmentation): a batch is cropped to a window whose sides are a
    /// share s of the image's, s uniform in [1/zoom, 1], at a uniformly drawn
    /// place, and resized back (bilinear, half-pixel), so the student learns
    /// the teacher's answer to normal content shown up to `zoom` times larger
    /// (a head that fills more of the field of view, a tile cropped closer).
    /// 1 (default, the paper): off. Drawn from the seed and the epoch, like
    /// the flips; a zoomed batch's teacher features are computed afresh.
    pub zoom: f64,
    /// After the last epoch, re-estimate the student's batch-norm running
    /// statistics with its final weights: the average of each layer's batch
    /// statistics over the training images in full batches of
    /// `batch_size`, in training mode (precise BN). Off: the exponential
    /// running averages (momentum 0.1) that training leaves, which trail
    /// the weights (`docs/multiad.md`, "Batch-norm statistics").
    pub precise_bn: bool,
    /// The share of each critical layer's cells (in the batch) with the
    /// largest distance that L_G averages (EfficientAD's hard feature loss).
    /// 1 (default): all of them, Eq 8.
    pub hard_share: f64,
}

/// Which flips training may apply to a batch (`train.flips`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flips {
    #[default]
    None,
    Horizontal,
    Vertical,
    Both,
}

impl Flips {
    /// The axes (2 = rows, 3 = columns of an N x C x H x W batch) that may be flipped.
    pub fn axes(self) -> &'static [usize] {
        match self {
            Flips::None => &[],
            Flips::Horizontal => &[3],
            Flips::Vertical => &[2],
            Flips::Both => &[2, 3],
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 250,
            batch_size: 16,
            lr: 1e-3,
            disc_lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            teacher_cache_mib: 4096,
            flips: Flips::None,
            zoom: 1.0,
            precise_bn: false,
            hard_share: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Convolution-enhanced multi-scale fusion Ψ (Eq 14). Off: plain sum of
    /// the upsampled per-layer maps. "MFF off" in Table 4.
    pub mff: bool,
    /// Gaussian σ in pixels of the final map (Eq 15); 4 is the field's convention.
    pub sigma: f64,
    /// Training images used to fit Ψ's statistics (0 = all).
    pub fit_images: usize,
    pub batch_size: usize,
    /// Where Eq 14's bilinear upsampling puts each layer cell: on its
    /// receptive-field centre in the teacher (`cell_centres`), or where
    /// PyTorch's half-pixel resize assumes it (`half_pixel`, the field's
    /// habit, off by (s − 1)/2 px at stride s for both teacher grids).
    pub upsample: MapUpsample,
    /// What Ψ centres a layer map on: its one mean over the normal training
    /// images (`layer`, batch norm on a one-channel map) or each cell's own
    /// mean there (`position`), σ then the layer's residual spread about them.
    pub psi_centre: PsiCentre,
}

/// `inference.psi_centre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PsiCentre {
    #[default]
    Layer,
    Position,
}

/// `inference.upsample`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapUpsample {
    #[default]
    HalfPixel,
    CellCentres,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self { mff: true, sigma: 4.0, fit_images: 0, batch_size: 8, upsample: MapUpsample::default(), psi_centre: PsiCentre::default() }
    }
}

impl ExperimentConfig {
    /// `student.padding` with `auto` resolved against the teacher: "SAME"
    /// for EfficientNet, symmetric for the torchvision ResNets and the
    /// random teacher (a symmetric student network itself).
    pub fn student_padding(&self) -> StudentPadding {
        match (self.student.padding, self.teacher.kind) {
            (StudentPadding::Auto, TeacherKind::EfficientnetLite0) => StudentPadding::Same,
            (StudentPadding::Auto, _) => StudentPadding::Symmetric,
            (p, _) => p,
        }
    }

    /// Where the layer maps' cells sit on the image (`inference.upsample`
    /// against the teacher's padding: TF "SAME" for EfficientNet, symmetric
    /// for the ResNets and the random teacher).
    pub fn cell_grid(&self) -> crate::anomaly_map::CellGrid {
        use crate::anomaly_map::CellGrid;
        match (self.inference.upsample, self.teacher.kind) {
            (MapUpsample::HalfPixel, _) => CellGrid::HalfPixel,
            (MapUpsample::CellCentres, TeacherKind::EfficientnetLite0) => CellGrid::Same,
            (MapUpsample::CellCentres, _) => CellGrid::Symmetric,
        }
    }
}

impl ConfigFile for ExperimentConfig {
    const METHOD: &'static str = crate::METHOD;

    fn validate(&self) -> Result<(), String> {
        if self.method != crate::METHOD {
            return Err(format!("`method` is {:?}, but this is a Multi-AD experiment file (method: multiad)", self.method));
        }
        let t = &self.train;
        if self.image_size == 0 || self.image_size % 32 != 0 {
            return Err(format!("`image_size` must be a positive multiple of 32 (the deepest stride), got {}", self.image_size));
        }
        if self.reflect_pad % 32 != 0 || self.reflect_pad >= self.image_size {
            return Err(format!(
                "`reflect_pad` must be a multiple of 32 (the deepest stride) below `image_size` ({}), got {}",
                self.image_size, self.reflect_pad
            ));
        }
        positive("train.lr", t.lr)?;
        positive("train.disc_lr", t.disc_lr)?;
        if t.epochs == 0 {
            return Err("`train.epochs` must be at least 1".into());
        }
        if !(t.hard_share > 0.0 && t.hard_share <= 1.0) {
            return Err(format!("`train.hard_share` must be in (0, 1], got {}", t.hard_share));
        }
        if !(t.zoom >= 1.0 && t.zoom.is_finite()) {
            return Err(format!("`train.zoom` must be at least 1 (1 = off), got {}", t.zoom));
        }
        if t.batch_size < 2 {
            return Err(format!("`train.batch_size` must be at least 2 (batch norm), got {}", t.batch_size));
        }
        for (k, b) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(format!("`{k}` must be in [0, 1), got {b}"));
            }
        }
        let s = &self.student;
        if s.blocks.len() != 4 || s.widths.len() != 4 {
            return Err("`student.blocks` and `student.widths` need four entries (one per stage)".into());
        }
        if s.blocks.contains(&0) || s.widths.contains(&0) || s.stem_channels == 0 || s.se_reduction == 0 {
            return Err("`student` sizes must be positive".into());
        }
        if s.mbconv_expand == 0 {
            return Err("`student.mbconv_expand` must be at least 1".into());
        }
        if s.layout == StudentLayout::Mbconv {
            if self.teacher.kind != TeacherKind::EfficientnetLite0 {
                return Err("`student.layout: mbconv` copies EfficientNet-Lite0's stage table, so it needs `teacher.kind: efficientnet_lite0`".into());
            }
            if s.dilation {
                return Err("`student.layout: mbconv` has undilated depthwise kernels: set `student.dilation: false`".into());
            }
            if s.padding == StudentPadding::Symmetric {
                return Err("`student.layout: mbconv` pads as its Lite0 teacher does (TF \"SAME\"): `student.padding` must be `auto` or `same`".into());
            }
        }
        let d = &self.discriminator;
        if d.channels.len() != 4 || d.channels.contains(&0) {
            return Err("`discriminator.channels` needs four positive entries".into());
        }
        if !(0.0..1.0).contains(&d.dropout) {
            return Err(format!("`discriminator.dropout` must be in [0, 1), got {}", d.dropout));
        }
        if d.grid == 0 {
            return Err("`discriminator.grid` must be at least 1".into());
        }
        if !(d.lambda >= 0.0 && d.lambda.is_finite()) {
            return Err(format!("`discriminator.lambda` must be >= 0, got {}", d.lambda));
        }
        if d.update_every == 0 {
            return Err("`discriminator.update_every` must be at least 1".into());
        }
        if !(0.0..0.5).contains(&d.label_smoothing) {
            return Err(format!("`discriminator.label_smoothing` must be in [0, 0.5), got {}", d.label_smoothing));
        }
        if self.inference.sigma < 0.0 || self.inference.batch_size == 0 {
            return Err("`inference.sigma` must be >= 0 and `inference.batch_size` >= 1".into());
        }
        if let Some(l) = &self.teacher.layers {
            if l.len() != 4 {
                return Err(format!("`teacher.layers` needs four levels (M1..M4), got {}", l.len()));
            }
        }
        if self.teacher.random_channels.len() != 4 || self.teacher.random_channels.contains(&0) {
            return Err("`teacher.random_channels` needs four positive entries".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> anyhow::Result<ExperimentConfig> {
        ExperimentConfig::from_yaml_str(text, Path::new("exp.yaml"))
    }

    #[test]
    fn reflect_pad_is_a_multiple_of_32_below_the_image_size() {
        let ok = parse("reflect_pad: 32\nreflect_pad_networks: teacher\n").unwrap();
        assert_eq!((ok.reflect_pad, ok.reflect_pad_networks), (32, FramedNetworks::Teacher));
        for bad in ["reflect_pad: 16\n", "image_size: 64\nreflect_pad: 64\n"] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains("reflect_pad") && e.contains("exp.yaml"), "{e}");
        }
        let e = format!("{:#}", parse("reflect_pad_networks: student\n").unwrap_err());
        assert!(e.contains("reflect_pad_networks"), "{e}");
    }

    #[test]
    fn zoom_is_at_least_one() {
        assert_eq!((parse("").unwrap().train.zoom, parse("train:\n  zoom: 1.25\n").unwrap().train.zoom), (1.0, 1.25));
        for bad in ["train:\n  zoom: 0.8\n", "train:\n  zoom: .nan\n", "train:\n  zoom: .inf\n"] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains("train.zoom") && e.contains("exp.yaml"), "{bad}: {e}");
        }
    }

    #[test]
    fn hard_share_is_a_share_and_psi_centre_names_a_choice() {
        let ok = parse("train:\n  hard_share: 0.25\ninference:\n  psi_centre: position\n").unwrap();
        assert_eq!((ok.train.hard_share, ok.inference.psi_centre), (0.25, PsiCentre::Position));
        assert_eq!((parse("").unwrap().train.hard_share, parse("").unwrap().inference.psi_centre), (1.0, PsiCentre::Layer));
        for bad in ["train:\n  hard_share: 0\n", "train:\n  hard_share: 1.5\n"] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains("train.hard_share") && e.contains("exp.yaml"), "{e}");
        }
        let e = format!("{:#}", parse("inference:\n  psi_centre: pixel\n").unwrap_err());
        assert!(e.contains("psi_centre"), "{e}");
    }

    #[test]
    fn an_mbconv_student_needs_a_lite0_teacher_and_no_dilation() {
        let lite0 = "teacher:\n  kind: efficientnet_lite0\n";
        let ok = parse(&format!("{lite0}student:\n  layout: mbconv\n  mbconv_expand: 2\n  dilation: false\n")).unwrap();
        assert_eq!((ok.student.layout, ok.student.mbconv_expand), (StudentLayout::Mbconv, 2));
        assert_eq!((parse("").unwrap().student.layout, parse("").unwrap().student.mbconv_expand), (StudentLayout::Bottleneck, 6));
        for (bad, says) in [
            ("student:\n  layout: mbconv\n  dilation: false\n".to_string(), "teacher.kind"),
            (format!("{lite0}student:\n  layout: mbconv\n"), "student.dilation"),
            (format!("{lite0}student:\n  layout: mbconv\n  dilation: false\n  padding: symmetric\n"), "student.padding"),
            (format!("{lite0}student:\n  mbconv_expand: 0\n"), "student.mbconv_expand"),
        ] {
            let e = format!("{:#}", parse(&bad).unwrap_err());
            assert!(e.contains(says) && e.contains("exp.yaml"), "{bad}: {e}");
        }
    }
}

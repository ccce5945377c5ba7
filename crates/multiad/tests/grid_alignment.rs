//! `student.padding`: student cell (i, j) and teacher cell (i, j) describe
//! the same pixels. Each critical-layer cell's receptive field is read off
//! the input gradient of a network whose convolutions all average (positive
//! weights, unit gain, positive input): every ReLU then passes, so the
//! gradient's support is exactly the receptive field, and its centre is
//! where the cell sits on the image. A max-pool passes its gradient to one
//! element of each window, so the input is a ramp, once rising and once
//! falling: the pool then picks the last, then the first element of each
//! window, and the mean of the two centres is the window's centre.

use candle_core::{Device, Tensor, Var};
use multiad::config::{StudentConfig, StudentLayout, StudentPadding};
use multiad::student::Student;
use multiad_backbones::efficientnet::EfficientNetLite0;
use multiad_backbones::FeatureExtractor;
use multiad_nn::ParamStore;

const SIZE: usize = 1024;

/// Every weight an average over its inputs, gains 1, shifts 0.
fn make_averaging(store: &ParamStore) {
    for (name, v) in store.trainable() {
        let t = v.as_tensor();
        let value = match t.dims().len() {
            4 | 2 => 1.0 / t.dims()[1..].iter().product::<usize>() as f64,
            _ if name.ends_with("bias") || name.ends_with("beta") => 0.0,
            _ => 1.0,
        };
        v.set(&t.ones_like().unwrap().affine(value, 0.0).unwrap()).unwrap();
    }
}

/// A positive ramp along rows and columns, rising or falling.
fn ramp(rising: bool, lo: f32, hi: f32) -> Var {
    let n = SIZE as f32;
    let v: Vec<f32> = (0..3 * SIZE * SIZE)
        .map(|k| {
            let (r, c) = ((k / SIZE) % SIZE, k % SIZE);
            let t = (r + c) as f32 / (2.0 * n);
            lo + (hi - lo) * if rising { t } else { 1.0 - t }
        })
        .collect();
    Var::from_tensor(&Tensor::from_vec(v, (1, 3, SIZE, SIZE), &Device::Cpu).unwrap()).unwrap()
}

/// Receptive-field centres of the middle cell of each level, with the ramp
/// rising and falling, averaged.
fn centres_both(forward: impl Fn(&Tensor) -> Vec<Tensor>, lo: f32, hi: f32) -> Vec<(usize, f64)> {
    let up = ramp(true, lo, hi);
    let down = ramp(false, lo, hi);
    let a = centres(&forward(up.as_tensor()), &up);
    let b = centres(&forward(down.as_tensor()), &down);
    a.iter().zip(&b).map(|(x, y)| (x.0, (x.1 + y.1) / 2.0)).collect()
}

/// Centre (row) of the receptive field of the middle cell of each level.
fn centres(levels: &[Tensor], x: &Var) -> Vec<(usize, f64)> {
    levels
        .iter()
        .map(|f| {
            let n = f.dim(2).unwrap();
            let stride = SIZE / n;
            let cell = f.narrow(2, n / 2, 1).unwrap().narrow(3, n / 2, 1).unwrap().sum_all().unwrap();
            let g = cell.backward().unwrap();
            let rows: Vec<f32> = g.get(x.as_tensor()).unwrap().abs().unwrap().sum((0, 1, 3)).unwrap().to_vec1().unwrap();
            let support: Vec<usize> = rows.iter().enumerate().filter(|(_, &v)| v > 0.0).map(|(i, _)| i).collect();
            let (lo, hi) = (support[0], *support.last().unwrap());
            assert!(lo > 0 && hi < SIZE - 1, "stride {stride}: the receptive field [{lo}, {hi}] reaches the image edge");
            (stride, (lo + hi) as f64 / 2.0)
        })
        .collect()
}

fn student_centres(padding: StudentPadding, reflect_pad: usize) -> Vec<(usize, f64)> {
    let dev = Device::Cpu;
    let cfg = StudentConfig {
        stem_channels: 4,
        blocks: vec![1, 1, 1, 1],
        widths: vec![4, 4, 4, 4],
        // SE's global pooling and the fusion's upsampling widen every
        // receptive field to the whole image; the grid is the convolutions'.
        se: false,
        fusion: false,
        padding,
        ..StudentConfig::default()
    };
    let store = ParamStore::new(0);
    let student = Student::new(&cfg, [4, 4, 4, 4], store.var_builder(&dev)).unwrap().framed(reflect_pad);
    make_averaging(&store);
    centres_both(|x| student.forward(x, false).unwrap(), 0.25, 0.75)
}

/// The critical levels of the cpu preset: Lite0's stages 1, 2, 4, 6.
const LITE0_CRITICAL: [usize; 4] = [1, 2, 4, 6];

/// Receptive-field centres of an averaging Lite0's critical levels.
fn lite0_centres() -> Vec<(usize, f64)> {
    let dev = Device::Cpu;
    let store = ParamStore::new(0);
    let net = EfficientNetLite0::new(store.var_builder(&dev), false).unwrap();
    make_averaging(&store);
    // Lite0's own input range; values under 1 stay well inside ReLU6.
    centres_both(
        |x| {
            let levels = net.features(x).unwrap();
            LITE0_CRITICAL.map(|i| levels[i].clone()).to_vec()
        },
        0.25,
        0.75,
    )
}

#[test]
fn lite0_cells_sit_at_s_i_plus_s_minus_1_and_the_same_padded_student_matches() {
    let teacher = lite0_centres();
    let same = student_centres(StudentPadding::Same, 0);
    let symmetric = student_centres(StudentPadding::Symmetric, 0);
    for ((t, s), y) in teacher.iter().zip(&same).zip(&symmetric) {
        let stride = t.0;
        let i = (SIZE / stride / 2) as f64;
        let s_f = stride as f64;
        assert_eq!(t.1, s_f * i + s_f - 1.0, "teacher at stride {stride}");
        assert_eq!(s.1, t.1, "same-padded student at stride {stride}");
        assert_eq!(y.1, s_f * i, "symmetric student at stride {stride}");
    }
}

/// `student.layout: mbconv` copies Lite0's stages, padding included, so its
/// critical cells sit where the teacher's do.
#[test]
fn the_mbconv_student_has_its_lite0_teachers_grid() {
    let dev = Device::Cpu;
    let cfg = StudentConfig { layout: StudentLayout::Mbconv, mbconv_expand: 2, dilation: false, se: false, fusion: false, ..StudentConfig::default() };
    let store = ParamStore::new(0);
    let student = Student::new_mbconv(&cfg, &LITE0_CRITICAL, store.var_builder(&dev)).unwrap();
    make_averaging(&store);
    // Each residual block doubles an average: inputs under 0.01 keep every
    // value below ReLU6's cap, past which the student passes no gradient.
    let ours = centres_both(|x| student.forward(x, false).unwrap(), 0.0025, 0.0075);
    assert_eq!(ours, lite0_centres());
}

/// `reflect_pad`: the frame is cropped off by whole cells, so every cell of
/// the framed student sits on the pixels of the unframed one's.
#[test]
fn a_reflect_framed_student_keeps_its_cells_on_the_same_pixels() {
    for padding in [StudentPadding::Same, StudentPadding::Symmetric] {
        let plain = student_centres(padding, 0);
        for pad in [32, 64] {
            assert_eq!(student_centres(padding, pad), plain, "{padding:?}, reflect_pad {pad}");
        }
    }
}

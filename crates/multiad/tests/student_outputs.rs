//! `student.linear_outputs`: the critical-layer outputs end in a ReLU (Eq 5,
//! the paper's WideResNet teacher) or are linear (signed, to match
//! EfficientNet's linear stage outputs), with and without fusion.

use candle_core::{Device, Tensor};
use multiad::config::StudentConfig;
use multiad::student::Student;
use multiad_nn::ParamStore;

fn min_per_output(linear: bool, fusion: bool) -> Vec<f32> {
    let dev = Device::Cpu;
    let cfg =
        StudentConfig { stem_channels: 8, blocks: vec![1, 2, 1, 1], widths: vec![4, 8, 8, 8], fusion, linear_outputs: linear, ..StudentConfig::default() };
    let store = ParamStore::new(3);
    let student = Student::new(&cfg, [6, 8, 10, 12], store.var_builder(&dev)).unwrap();
    let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 64), &dev).unwrap();
    let outs = student.forward(&x, true).unwrap();
    assert_eq!(outs.iter().map(|o| o.dim(1).unwrap()).collect::<Vec<_>>(), [6, 8, 10, 12]);
    outs.iter().map(|o| o.min_all().unwrap().to_scalar::<f32>().unwrap()).collect()
}

#[test]
fn relu_outputs_are_never_negative() {
    for fusion in [true, false] {
        assert!(min_per_output(false, fusion).iter().all(|&m| m >= 0.0), "fusion {fusion}");
    }
}

#[test]
fn linear_outputs_are_signed_in_every_critical_layer() {
    for fusion in [true, false] {
        let mins = min_per_output(true, fusion);
        assert!(mins.iter().all(|&m| m < 0.0), "fusion {fusion}: {mins:?}");
    }
}

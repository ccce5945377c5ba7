//! SimpleNet at the smoke scale: separates synthetic defects, reloads, and
//! its truncated L1 loss falls; an interrupted fit resumes to the same
//! weights; bad configs are named.

use multiad_detector::testing::assert_loss_fell;
use multiad_simplenet::{SimpleNet, SimpleNetConfig};

multiad_detector::method_tests! {
    build: SimpleNet::new, config: SimpleNetConfig, backbone: "random_resnet18",
    smoke_checks: assert_loss_fell,
    bad_keys: [("noise_std: 0\n", "noise_std"), ("disc_lr: -1\n", "disc_lr"), ("layers: [2, 1]\n", "layers"), ("noise: 1\n", "noise")],
    resume_epochs: 3,
}

//! STFPM at the smoke scale: separates synthetic defects, reloads, and its
//! loss falls; an interrupted fit resumes to the same weights; bad configs
//! are named.

use multiad_detector::testing::assert_loss_fell;
use multiad_stfpm::{Stfpm, StfpmConfig};

multiad_detector::method_tests! {
    build: Stfpm::new, config: StfpmConfig, backbone: "random_resnet18",
    smoke_checks: assert_loss_fell,
    bad_keys: [("lr: -0.4\n", "lr"), ("batch_size: 1\n", "batch_size"), ("momentum: 1.5\n", "momentum"), ("epoch: 3\n", "epoch")],
    // Levels whose strides do not step 4, 8, 16 cannot be matched by the student.
    refused_by_build: [("layers: [0, 2]\n", "stride")],
    resume_epochs: 4,
}

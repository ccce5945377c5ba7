//! `cargo xtask bench conv` and `cargo xtask bench model`.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use multiad::loss::distillation_loss;
use multiad::{ExperimentConfig, MultiAd};
use multiad_detector::ConfigFile;

fn best_of<F: FnMut() -> Result<()>>(reps: usize, f: F) -> Result<f64> {
    best_of_on(&Device::Cpu, reps, f)
}

/// The best time of `reps` calls after a warm-up; on a GPU each call is
/// timed to the end of its kernels (candle queues them asynchronously).
fn best_of_on<F: FnMut() -> Result<()>>(dev: &Device, reps: usize, mut f: F) -> Result<f64> {
    f()?; // warm-up
    dev.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Forward + backward of typical student convolutions with candle's op and ours.
pub fn conv() -> Result<()> {
    multiad_nn::set_default_threads();
    matrix_products();
    println!("\n== conv2d forward + backward: candle 0.11 vs multiad-nn (im2col + gemm) ==");
    println!("{:<44} {:>10} {:>10} {:>8}", "shape (batch, cin->cout, size, k/stride/dil)", "candle ms", "ours ms", "ratio");
    let dev = Device::Cpu;
    // (batch, cin, cout, size, k, padding, stride, dilation)
    let cases = [
        (8, 32, 32, 64, 3, 1, 1, 1),
        (8, 64, 64, 32, 3, 2, 1, 2),
        (8, 128, 128, 16, 3, 4, 1, 4),
        (8, 64, 128, 32, 3, 1, 2, 1),
        (8, 256, 256, 32, 3, 1, 1, 1),
        (8, 256, 64, 64, 1, 0, 1, 1),
    ];
    for (b, cin, cout, size, k, p, s, d) in cases {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, cin, size, size), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (cout, cin, k, k), &dev)?)?;
        let t_candle = best_of(3, || {
            let y = x.as_tensor().conv2d(w.as_tensor(), p, s, d, 1)?;
            y.sum_all()?.backward()?;
            Ok(())
        })?;
        let t_ours = best_of(3, || {
            let y = multiad_nn::conv2d(x.as_tensor(), w.as_tensor(), p, s, d)?;
            y.sum_all()?.backward()?;
            Ok(())
        })?;
        let label = format!("{b}, {cin}->{cout}, {size}x{size}, {k}/{s}/{d}");
        println!("{:<44} {:>10.1} {:>10.1} {:>7.2}x", label, t_candle * 1e3, t_ours * 1e3, t_candle / t_ours);
    }

    // Frozen backbones only run forward passes: the teachers' shapes.
    println!("\n== conv2d forward only (frozen backbones): candle 0.11 vs multiad-nn ==");
    println!("{:<44} {:>10} {:>10} {:>8}", "shape (batch, cin->cout, size, k/stride)", "candle ms", "ours ms", "ratio");
    let forward_cases = [
        (8, 64, 64, 64, 3, 1, 1),
        (8, 256, 128, 64, 1, 0, 1),
        (8, 128, 128, 64, 3, 1, 2),
        (8, 512, 512, 16, 3, 1, 1),
        (16, 24, 144, 64, 1, 0, 1),
        (16, 3, 32, 256, 3, 0, 2),
    ];
    for (b, cin, cout, size, k, p, s) in forward_cases {
        let x = Tensor::randn(0f32, 1.0, (b, cin, size, size), &dev)?;
        let w = Tensor::randn(0f32, 0.05, (cout, cin, k, k), &dev)?;
        let t_candle = best_of(3, || {
            x.conv2d(&w, p, s, 1, 1)?;
            Ok(())
        })?;
        let t_ours = best_of(3, || {
            multiad_nn::conv2d(&x, &w, p, s, 1)?;
            Ok(())
        })?;
        let label = format!("{b}, {cin}->{cout}, {size}x{size}, {k}/{s}");
        println!("{:<44} {:>10.1} {:>10.1} {:>7.2}x", label, t_candle * 1e3, t_ours * 1e3, t_candle / t_ours);
    }

    // EfficientNet-Lite0's depthwise layers (batch 16, 256x256 input).
    println!("\n== depthwise conv2d: candle 0.11 grouped vs multiad-nn direct ==");
    println!("{:<44} {:>10} {:>10} {:>8}", "shape (batch, channels, size, k/stride), pass", "candle ms", "ours ms", "ratio");
    let depthwise_cases = [(16, 96, 128, 3, 2), (16, 144, 64, 5, 2), (16, 240, 32, 3, 2), (16, 480, 16, 5, 1), (16, 672, 16, 5, 2)];
    for (b, c, size, k, s) in depthwise_cases {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, c, size, size), &dev)?)?;
        let w = Tensor::randn(0f32, 0.05, (c, 1, k, k), &dev)?;
        let t_candle = best_of(3, || {
            x.as_tensor().conv2d(&w, k / 2, s, 1, c)?;
            Ok(())
        })?;
        let t_ours = best_of(3, || {
            multiad_nn::depthwise_conv2d(x.as_tensor(), &w, k / 2, s)?;
            Ok(())
        })?;
        let label = format!("{b}, {c}, {size}x{size}, {k}/{s}, forward");
        println!("{:<44} {:>10.1} {:>10.1} {:>7.2}x", label, t_candle * 1e3, t_ours * 1e3, t_candle / t_ours);
        // Input gradient, as MKD's saliency maps need through a frozen source.
        let t_ours_bwd = best_of(3, || {
            multiad_nn::depthwise_conv2d(x.as_tensor(), &w, k / 2, s)?.sum_all()?.backward()?;
            Ok(())
        })?;
        let label = format!("{b}, {c}, {size}x{size}, {k}/{s}, fwd + input grad");
        println!("{:<44} {:>10} {:>10.1} {:>8}", label, "-", t_ours_bwd * 1e3, "-");
    }
    Ok(())
}

/// Times the preset's networks with random weights (speed does not depend on
/// the values), and PyTorch's equivalents when `torch` is importable.
pub fn model(preset: &str, batch: usize, rounds: usize, device: multiad_nn::DeviceSpec) -> Result<()> {
    multiad_nn::set_default_threads();
    let root = crate::repo_root();
    let mut cfg = ExperimentConfig::from_yaml_file(&root.join(format!("experiments/{preset}.yaml")))?;
    // Random teacher weights of the right architecture: write them to a
    // temporary safetensors file through the parameter store.
    let dev = device.open().map_err(anyhow::Error::msg)?;
    let tmp = tempfile::tempdir()?;
    let wpath = tmp.path().join("teacher.safetensors");
    {
        let store = multiad_nn::ParamStore::new(0);
        let vb = store.var_builder(&dev);
        match cfg.teacher.kind {
            multiad::config::TeacherKind::WideResnet50_2 => {
                multiad_backbones::resnet::ResNet::new(multiad_backbones::resnet::ResNetKind::WideResNet50_2, vb)?;
            }
            multiad::config::TeacherKind::Resnet18 => {
                multiad_backbones::resnet::ResNet::new(multiad_backbones::resnet::ResNetKind::ResNet18, vb)?;
            }
            multiad::config::TeacherKind::EfficientnetLite0 => {
                multiad_backbones::efficientnet::EfficientNetLite0::new(vb, false)?;
            }
            multiad::config::TeacherKind::Random => {}
        }
        if !store.is_empty() {
            candle_core::safetensors::save(&store.tensors(), &wpath)?;
            cfg.teacher.weights = Some(wpath.clone());
        }
    }
    let size = cfg.image_size as usize;
    println!("\n== Multi-AD `{preset}` networks on {device}, batch {batch}, {size}x{size}, {rounds} round(s) ==");
    let model = MultiAd::build(&cfg, &dev)?;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &dev)?;
    let t_feats = model.teacher.forward(&x)?;
    let mut opt = multiad_nn::Adam::new(model.student_params.trainable(), multiad_nn::AdamConfig::default())?;
    // For profilers (`perf record`): one part only, ten times, no PyTorch.
    if let Ok(part) = std::env::var("MULTIAD_BENCH_ONLY") {
        let t0 = Instant::now();
        for _ in 0..10 {
            match part.as_str() {
                "teacher" => drop(model.teacher.forward(&x)?),
                "step" => {
                    let l = distillation_loss(&t_feats, &model.student.forward(&x, true)?)?;
                    opt.step(&l.backward()?)?;
                }
                "inference" => {
                    let maps = multiad::anomaly_map::layer_maps(&model.teacher.forward(&x)?, &model.student.forward(&x, false)?)?;
                    multiad::anomaly_map::fuse(&maps, None, multiad::anomaly_map::CellGrid::HalfPixel, size, size, 0.0)?;
                }
                other => anyhow::bail!("MULTIAD_BENCH_ONLY={other}: expected teacher, step or inference"),
            }
        }
        println!("{part}: {:.1} ms per call (mean of 10)", t0.elapsed().as_secs_f64() * 100.0);
        return Ok(());
    }
    // This machine's speed drifts by tens of percent over minutes (PyTorch's
    // own times vary that much between runs), so candle and PyTorch take
    // turns, round by round, and each side keeps its best time.
    let mut best = [f64::INFINITY; 3];
    // The parts of the step and of inference, from candle's best round.
    let (mut split, mut infer_split) = ([0f64; 3], [0f64; 3]);
    let mut torch: Option<TorchTimes> = None;
    let mut torch_missing = false;
    for round in 0..rounds {
        let t_teacher = best_of_on(&dev, 2, || {
            model.teacher.forward(&x)?;
            Ok(())
        })?;
        // The step's three parts, from the last timed repetition.
        let mut step_parts = [0f64; 3];
        let t_step = best_of_on(&dev, 2, || {
            let t0 = Instant::now();
            let s = model.student.forward(&x, true)?;
            let l = distillation_loss(&t_feats, &s)?;
            let t1 = Instant::now();
            let g = l.backward()?;
            let t2 = Instant::now();
            opt.step(&g)?;
            step_parts = [(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), t2.elapsed().as_secs_f64()];
            Ok(())
        })?;
        // MultiAd::layer_maps's steps, timed one by one.
        let mut infer_parts = [0f64; 3];
        let t_infer = best_of_on(&dev, 2, || {
            let t0 = Instant::now();
            let t = model.teacher.forward(&x)?;
            let t1 = Instant::now();
            let s = model.student.forward(&x, false)?;
            let t2 = Instant::now();
            let maps = multiad::anomaly_map::layer_maps(&t, &s)?;
            // No smoothing: the PyTorch side sums upsampled maps only.
            multiad::anomaly_map::fuse(&maps, None, multiad::anomaly_map::CellGrid::HalfPixel, size, size, 0.0)?;
            infer_parts = [(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), t2.elapsed().as_secs_f64()];
            Ok(())
        })?;
        if t_step < best[1] {
            split = step_parts;
        }
        if t_infer < best[2] {
            infer_split = infer_parts;
        }
        for (b, t) in best.iter_mut().zip([t_teacher, t_step, t_infer]) {
            *b = b.min(t);
        }
        if torch_missing {
            continue;
        }
        match (torch_times(preset, batch, size, device), &mut torch) {
            (None, _) => torch_missing = true,
            (Some(v), None) => torch = Some(v),
            (Some(v), Some(kept)) => {
                for (k, t) in kept.seconds.iter_mut().zip(v.seconds) {
                    *k = k.min(t);
                }
                kept.gemm_flops_per_s = kept.gemm_flops_per_s.max(v.gemm_flops_per_s);
            }
        }
        if rounds > 1 {
            let torch_ms = torch.as_ref().map(|v| format!("{:.0} / {:.0} / {:.0}", v.seconds[0] * 1e3, v.seconds[1] * 1e3, v.seconds[2] * 1e3));
            eprintln!(
                "round {}: candle {:.0} / {:.0} / {:.0} ms, PyTorch best so far {} ms",
                round + 1,
                t_teacher * 1e3,
                t_step * 1e3,
                t_infer * 1e3,
                torch_ms.unwrap_or_else(|| "-".into())
            );
        }
    }
    let [t_teacher, t_step, t_infer] = best;
    let rows = [("teacher forward", t_teacher), ("student training step (no D)", t_step), ("inference (T + S + maps)", t_infer)];
    let peak = gemm_peak(&dev)?;
    println!("{:<30} {:>10} {:>8} {:>9} {:>11} {:>9} {:>7}", "", "candle ms", "img/s", "GFLOP/s", "PyTorch ms", "GFLOP/s", "ratio");
    for (i, (name, t)) in rows.iter().enumerate() {
        let (tt, tg, ratio, g) = match &torch {
            Some(v) => {
                let gflop = v.flops[i] / 1e9;
                (format!("{:.1}", v.seconds[i] * 1e3), format!("{:.1}", gflop / v.seconds[i]), format!("{:.2}x", t / v.seconds[i]), format!("{:.1}", gflop / t))
            }
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!("{:<30} {:>10.1} {:>8.2} {:>9} {:>11} {:>9} {:>7}", name, t * 1e3, batch as f64 / t, g, tt, tg, ratio);
    }
    println!("student step, best round: forward + loss {:.1} ms, backward {:.1} ms, Adam {:.1} ms", split[0] * 1e3, split[1] * 1e3, split[2] * 1e3);
    println!("inference, best round: teacher {:.1} ms, student {:.1} ms, maps {:.1} ms", infer_split[0] * 1e3, infer_split[1] * 1e3, infer_split[2] * 1e3);
    match &torch {
        Some(v) => println!(
            "attainable f32 rate (one 2048^3 matrix product): candle {:.1} GFLOP/s, PyTorch {:.1} GFLOP/s; operation counts by PyTorch's FlopCounterMode ({:.1} / {:.1} / {:.1} GFLOP)",
            peak / 1e9,
            v.gemm_flops_per_s / 1e9,
            v.flops[0] / 1e9,
            v.flops[1] / 1e9,
            v.flops[2] / 1e9
        ),
        None => {
            println!("attainable f32 rate (one 2048^3 matrix product): candle {:.1} GFLOP/s", peak / 1e9);
            println!("(PyTorch is not importable here: `pip install torch torchvision pyyaml` and run again for the comparison and the GFLOP/s columns)");
        }
    }
    Ok(())
}

/// The matrix products under the convolutions: the `gemm` crate (candle's)
/// against each of our kernels this CPU runs, same operands, same threads.
fn matrix_products() {
    use multiad_nn::sgemm::{gemm, Backend, Mat, Parallelism};
    let threads = rayon::current_num_threads();
    println!("\n== f32 matrix products: gemm crate (candle's) vs multiad-nn kernels, GFLOP/s ==");
    let ours: Vec<Backend> = Backend::available().into_iter().filter(|b| *b != Backend::GemmCrate).collect();
    print!("{:<46} {:>8}", "m x n x k (what), threads", "crate");
    for b in &ours {
        print!(" {:>8}", b.name());
    }
    println!(" {:>8}", "best/crate");
    // (m, n, k, B transposed, what)
    let cases = [
        (256, 1024, 2304, false, "3x3 conv forward, 256 ch, 32x32 band"),
        (1024, 4096, 256, false, "1x1 conv forward, 256 -> 1024, 64x64"),
        (256, 2304, 1024, true, "3x3 kernel gradient (B transposed)"),
        (2304, 1024, 256, false, "input gradient W^T dY (A transposed)"),
        (256, 4096, 128, false, "1x1 conv forward, 128 -> 256, 64x64"),
        (512, 1024, 256, false, "1x1 conv forward, 256 -> 512, 32x32"),
        (1024, 64, 2048, false, "1x1 conv forward, 2048 -> 1024, 8x8"),
        (2048, 2048, 2048, false, "square"),
    ];
    for (m, n, k, bt, what) in cases {
        let av: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
        let bv: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
        let a = if what.contains("A transposed") { Mat { data: &av, rs: 1, cs: m } } else { Mat { data: &av, rs: k, cs: 1 } };
        let b = if bt { Mat { data: &bv, rs: 1, cs: k } } else { Mat { data: &bv, rs: n, cs: 1 } };
        let mut c = vec![0f32; m * n];
        for t in [1, threads] {
            let par = if t > 1 { Parallelism::Rayon(t) } else { Parallelism::None };
            let rate = |backend: Backend, c: &mut Vec<f32>| {
                let secs = best_of(3, || {
                    gemm(backend, c, n, m, n, k, a, b, false, par);
                    Ok(())
                })
                .unwrap_or(f64::INFINITY);
                2.0 * (m * n * k) as f64 / secs / 1e9
            };
            let base = rate(Backend::GemmCrate, &mut c);
            print!("{:<46} {:>8.1}", format!("{m} x {n} x {k} ({what}), {t}"), base);
            let mut best = base;
            for backend in &ours {
                let r = rate(*backend, &mut c);
                best = best.max(r);
                print!(" {:>8.1}", r);
            }
            println!(" {:>7.2}x", best / base);
        }
    }
    println!("(convolutions use {}; MULTIAD_GEMM=crate|avx2|avx512 chooses another)", Backend::chosen().name());
}

/// f32 operations per second of one large matrix product through candle.
fn gemm_peak(dev: &Device) -> Result<f64> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), dev)?;
    let t = best_of_on(dev, 3, || {
        a.matmul(&b)?;
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / t)
}

struct TorchTimes {
    seconds: [f64; 3],
    flops: [f64; 3],
    gemm_flops_per_s: f64,
}

/// Runs scripts/bench_torch.py when `python3 -c "import torch"` works.
fn torch_times(preset: &str, batch: usize, size: usize, device: multiad_nn::DeviceSpec) -> Option<TorchTimes> {
    let ok = std::process::Command::new("python3").args(["-c", "import torch"]).output().ok()?.status.success();
    if !ok {
        return None;
    }
    let root = crate::repo_root();
    let out = std::process::Command::new("python3")
        .current_dir(&root)
        .arg(root.join("scripts/bench_torch.py"))
        .args(["--preset", preset, "--batch", &batch.to_string(), "--size", &size.to_string(), "--device", &device.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("scripts/bench_torch.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let keys = ["teacher", "train_step", "inference"];
    let mut seconds = [0.0; 3];
    let mut flops = [0.0; 3];
    for (i, k) in keys.iter().enumerate() {
        seconds[i] = v[k].as_f64()?;
        flops[i] = v["flops"][k].as_f64()?;
    }
    Some(TorchTimes { seconds, flops, gemm_flops_per_s: v["gemm_flops_per_s"].as_f64()? })
}

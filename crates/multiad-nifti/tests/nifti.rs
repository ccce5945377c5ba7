//! NIfTI-1 reading: round trips of every datatype, scaling, byte order,
//! orientation, bad input, and the real BraTS volumes in `../shared` (skipped
//! when absent).

use std::io::Write;
use std::path::{Path, PathBuf};

use multiad_nifti::{read, write, DataType, WriteSpec};

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 97) as f32 - 20.0).collect()
}

#[test]
fn every_datatype_round_trips_plain_and_gzipped() {
    let t = tempfile::tempdir().unwrap();
    let shape = [4, 3, 5];
    let values = ramp(60);
    for dt in [DataType::Int8, DataType::Int16, DataType::Int32, DataType::Int64, DataType::Float32, DataType::Float64] {
        for name in ["v.nii", "v.nii.gz"] {
            let p = t.path().join(format!("{dt:?}-{name}"));
            write(&p, &WriteSpec { datatype: dt, ..WriteSpec::float(shape) }, &values).unwrap();
            let v = read(&p).unwrap();
            assert_eq!(v.shape, vec![4, 3, 5]);
            assert_eq!(v.header.datatype, dt);
            assert_eq!(v.data, values, "{dt:?} {name}");
        }
    }
    // Unsigned types hold the non-negative part.
    let pos: Vec<f32> = values.iter().map(|v| v.abs()).collect();
    for dt in [DataType::Uint8, DataType::Uint16, DataType::Uint32, DataType::Uint64] {
        let p = t.path().join(format!("{dt:?}.nii"));
        write(&p, &WriteSpec { datatype: dt, ..WriteSpec::float(shape) }, &pos).unwrap();
        assert_eq!(read(&p).unwrap().data, pos, "{dt:?}");
    }
    // Gzip is recognised by content, not by name.
    let gz = t.path().join("Int16-v.nii.gz");
    let renamed = t.path().join("renamed.nii");
    std::fs::copy(&gz, &renamed).unwrap();
    assert_eq!(read(&renamed).unwrap().data, values);
}

#[test]
fn scl_slope_and_inter_apply_and_zero_slope_means_none() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("ct.nii.gz");
    // CT stored as int16 with the usual -1024 intercept.
    let hu: Vec<f32> = vec![-1024.0, -200.0, 0.0, 40.0, 250.0, 3071.0, 17.0, -5.0];
    let spec = WriteSpec { datatype: DataType::Int16, slope: 1.0, inter: -1024.0, ..WriteSpec::float([2, 2, 2]) };
    write(&p, &spec, &hu).unwrap();
    let v = read(&p).unwrap();
    assert_eq!(v.data, hu);
    assert_eq!(v.header.scaling(), Some((1.0, -1024.0)));
    let p2 = t.path().join("half.nii");
    let spec = WriteSpec { datatype: DataType::Int16, slope: 0.5, inter: 10.0, ..WriteSpec::float([2, 2, 2]) };
    let vals = vec![10.0, 10.5, 11.0, 9.5, 0.0, 20.0, 10.0, 12.5];
    write(&p2, &spec, &vals).unwrap();
    assert_eq!(read(&p2).unwrap().data, vals);
    // Patch the slope to 0: values come back as stored.
    let mut bytes = std::fs::read(&p2).unwrap();
    bytes[112..116].copy_from_slice(&0f32.to_le_bytes());
    std::fs::write(&p2, &bytes).unwrap();
    let raw = read(&p2).unwrap();
    assert_eq!(raw.header.scaling(), None);
    assert_eq!(raw.data[1], 1.0); // (10.5 - 10) / 0.5
}

/// A big-endian file built field by field, as some scanners write them.
#[test]
fn big_endian_files_read() {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_be_bytes());
    for (i, d) in [3i16, 2, 2, 1, 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_be_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_be_bytes()); // int16
    h[72..74].copy_from_slice(&16i16.to_be_bytes());
    h[108..112].copy_from_slice(&352f32.to_be_bytes());
    h[112..116].copy_from_slice(&2f32.to_be_bytes());
    h[116..120].copy_from_slice(&1f32.to_be_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    for v in [-3i16, 0, 7, 300] {
        h.extend(v.to_be_bytes());
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("be.nii");
    std::fs::write(&p, &h).unwrap();
    let v = read(&p).unwrap();
    assert!(v.header.big_endian);
    assert_eq!(v.data, vec![-5.0, 1.0, 15.0, 601.0]);
}

#[test]
fn slices_follow_nibabel_indexing_and_the_affine_names_the_axial_axis() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("o.nii");
    let [nx, ny, nz] = [3usize, 4, 2];
    let vals: Vec<f32> = (0..nx * ny * nz).map(|i| i as f32).collect();
    // Axis 1 runs along world z (a coronal-stored volume).
    let spec = WriteSpec { affine: [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -2.0, 0.0, 0.0]], ..WriteSpec::float([nx, ny, nz]) };
    write(&p, &spec, &vals).unwrap();
    let v = read(&p).unwrap();
    assert_eq!(v.axial_axis(), 1);
    // data[i, j, k] = i + nx * (j + ny * k)
    let (r, c, s) = v.slice(2, 1);
    assert_eq!((r, c), (nx, ny));
    assert_eq!(s[ny + 2], (1 + nx * (2 + ny)) as f32);
    let (r, c, s) = v.slice(1, 3);
    assert_eq!((r, c), (nx, nz));
    assert_eq!(s[2 * nz + 1], (2 + nx * (3 + ny)) as f32);
    let (r, c, s) = v.slice(0, 2);
    assert_eq!((r, c), (ny, nz));
    assert_eq!(s[3 * nz], (2 + nx * 3) as f32);
}

fn written(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    write(&p, &WriteSpec::float([8, 8, 8]), &ramp(512)).unwrap();
    p
}

/// A valid 8x8x8 file `name` with the header bytes from `at` replaced by `with`.
fn written_with(dir: &Path, name: &str, at: usize, with: &[u8]) -> PathBuf {
    let p = written(dir, name);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[at..at + with.len()].copy_from_slice(with);
    std::fs::write(&p, &bytes).unwrap();
    p
}

#[test]
fn bad_files_are_errors_naming_the_file_and_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let err = |p: &Path| {
        let e = read(p).unwrap_err().to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        e
    };
    // Truncated gzip stream.
    let gz = written(t.path(), "a.nii.gz");
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    assert!(err(&gz).contains("gzip stream is truncated or corrupt"));
    // Wrong magic.
    let p = written_with(t.path(), "b.nii", 344, b"abcd");
    assert!(err(&p).contains("wrong magic"));
    // Dimensions that disagree with the data size.
    let p = written_with(t.path(), "c.nii", 46, &9i16.to_le_bytes()); // dim[3] = 9 for 8 slices of data
    let e = err(&p);
    assert!(e.contains("dimensions [8, 8, 9]") && e.contains("truncated, or the header's dimensions are wrong"), "{e}");
    // Not NIfTI at all, too short, a .hdr/.img header, NIfTI-2.
    let p = t.path().join("d.nii");
    std::fs::write(&p, vec![7u8; 400]).unwrap();
    assert!(err(&p).contains("not a NIfTI-1 file"));
    std::fs::write(&p, b"short").unwrap();
    assert!(err(&p).contains("too short"));
    let p = written_with(t.path(), "e.nii", 344, b"ni1\0");
    assert!(err(&p).contains(".hdr/.img pair"));
    let mut f = std::fs::File::create(t.path().join("n2.nii")).unwrap();
    f.write_all(&540i32.to_le_bytes()).unwrap();
    f.write_all(&[0u8; 600]).unwrap();
    drop(f);
    assert!(err(&t.path().join("n2.nii")).contains("NIfTI-2"));
    // Unsupported datatype (complex64).
    let p = written(t.path(), "f.nii");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[70..72].copy_from_slice(&32i16.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    assert!(err(&p).contains("datatype 32 is not supported"));
    // Missing file.
    assert!(err(&t.path().join("missing.nii")).contains("cannot read file"));
}

/// Values checked against an independent NumPy reading of the same files.
#[test]
fn real_brats_volumes_from_shared() {
    let Some(shared) = std::env::var_os("MULTIAD_SHARED")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")))
        .filter(|p| p.is_dir())
    else {
        eprintln!("SKIPPED: needs ../shared (set MULTIAD_SHARED)");
        return;
    };
    let case = shared.join("data/brats_volumes/test/brats_2013_pat0001_1");
    let flair = read(&case.join("Flair_subtrMeanDivStd.nii.gz")).unwrap();
    assert_eq!(flair.shape3(&case).unwrap(), [240, 240, 155]);
    assert_eq!(flair.axial_axis(), 2);
    let at = |v: &multiad_nifti::Volume, i: usize, j: usize, k: usize| v.data[i + 240 * (j + 240 * k)];
    assert!((at(&flair, 120, 130, 80) - 0.250_830_74).abs() < 1e-6);
    let lo = flair.data.iter().cloned().fold(f32::INFINITY, f32::min);
    assert!((lo + 3.624_394_4).abs() < 1e-5, "{lo}");
    let seg = read(&case.join("OTMultiClass.nii.gz")).unwrap();
    let (_, _, s80) = seg.slice(2, 80);
    assert_eq!(s80.iter().filter(|&&v| v != 0.0).count(), 1973);
    // int32 with scl_slope 2.3e-10 and scl_inter 0.5: scaled to {0, 1}.
    let mask = read(&case.join("brainmask.nii.gz")).unwrap();
    assert_eq!(mask.header.datatype, DataType::Int32);
    assert!(mask.data.iter().all(|&v| v.abs() < 1e-6 || (v - 1.0).abs() < 1e-6));
    let total: f64 = mask.data.iter().map(|&v| v as f64).sum();
    assert!((total - 1_487_564.96).abs() < 2.0, "{total}");
}

/// A header that claims 2^40 voxels (or more than `usize` holds) is refused
/// from its header alone, plain or gzipped: nothing is allocated for it and
/// the gzip stream is not decompressed past the header.
#[test]
fn a_header_claiming_huge_dimensions_is_refused_before_allocating() {
    let t = tempfile::tempdir().unwrap();
    // overflow.nii: the uncompressed path once multiplied the dimensions before checking them (a panic; found by fuzzing).
    for (name, dims) in
        [("huge.nii", [4i16, 1024, 1024, 1024, 1024]), ("overflow.nii.gz", [7, 32767, 32767, 32767, 32767]), ("overflow.nii", [7, 32767, 32767, 32767, 32767])]
    {
        let p = written(t.path(), "base.nii");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[40..42].copy_from_slice(&dims[0].to_le_bytes());
        for (i, d) in dims[1..].iter().chain(std::iter::repeat(&32767)).take(dims[0] as usize).enumerate() {
            bytes[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        let out = t.path().join(name);
        if name.ends_with(".gz") {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            std::fs::write(&out, gz.finish().unwrap()).unwrap();
        } else {
            std::fs::write(&out, &bytes).unwrap();
        }
        let e = read(&out).unwrap_err().to_string();
        assert!(e.contains(&out.display().to_string()) && e.contains("claim more than 8 GiB of voxels"), "{e}");
    }
}

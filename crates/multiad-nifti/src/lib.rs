//! NIfTI-1 volumes: the format of BraTS, BTCV and LiTS.
//!
//! [`read`] takes a single-file NIfTI-1 (`.nii`, or gzip-compressed
//! `.nii.gz`, recognised by content) of any integer or float datatype, either
//! byte order, applies `scl_slope`/`scl_inter`, and keeps the voxel-to-world
//! affine (sform, else qform, else pixdim) so that callers can find the axial
//! axis whatever the storage order. [`write`] writes volumes (prepared data,
//! test fixtures). Every failure names the file and what is wrong with it.
//!
//! Own reader rather than the `nifti` crate: that crate pulls ndarray and
//! nalgebra for what is 300 lines here, and the data sets need nothing beyond
//! NIfTI-1 single files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod header;

pub use header::{DataType, Header};

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct NiftiError {
    pub path: PathBuf,
    pub problem: String,
}

impl NiftiError {
    pub(crate) fn new(path: &Path, problem: impl Into<String>) -> Self {
        NiftiError { path: path.to_path_buf(), problem: problem.into() }
    }
}

pub type Result<T> = std::result::Result<T, NiftiError>;

/// A volume's voxels as `f32` after `scl_slope`/`scl_inter`, with the first
/// axis fastest (NIfTI's storage order: index = i + nx * (j + ny * k)).
#[derive(Debug, Clone)]
pub struct Volume {
    pub header: Header,
    /// Sizes of the spatial (and further) axes: `dim[1..=dim[0]]`.
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Volume {
    /// Sizes of the three spatial axes; an error names the file when the
    /// volume is not 3-D (a 4-D volume with one time point counts as 3-D).
    pub fn shape3(&self, path: &Path) -> Result<[usize; 3]> {
        let s = &self.shape;
        let extra: usize = s.iter().skip(3).product();
        if s.len() < 3 || extra != 1 {
            return Err(NiftiError::new(path, format!("expected a 3-D volume, found dimensions {s:?}")));
        }
        Ok([s[0], s[1], s[2]])
    }

    /// The voxel axis (0, 1 or 2) that runs most nearly along the world's
    /// inferior-superior axis: slicing across it gives axial images.
    pub fn axial_axis(&self) -> usize {
        let a = self.header.affine();
        (0..3).max_by(|&x, &y| a[2][x].abs().total_cmp(&a[2][y].abs())).unwrap_or(2)
    }

    /// One 2-D slice across `axis` at `index`, as (rows, cols, values): rows
    /// run along the lower remaining axis, columns along the higher one, as
    /// `data[:, :, k]` of a NumPy array read with nibabel.
    pub fn slice(&self, axis: usize, index: usize) -> (usize, usize, Vec<f32>) {
        let [nx, ny, nz] = [self.shape[0], self.shape[1], self.shape[2]];
        let at = |i: usize, j: usize, k: usize| self.data[i + nx * (j + ny * k)];
        let (rows, cols) = match axis {
            0 => (ny, nz),
            1 => (nx, nz),
            _ => (nx, ny),
        };
        let mut out = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                out.push(match axis {
                    0 => at(index, r, c),
                    1 => at(r, index, c),
                    _ => at(r, c, index),
                });
            }
        }
        (rows, cols, out)
    }
}

/// The most voxel data one volume may hold (8 GiB): a header that claims
/// more is refused before anything is allocated or decompressed.
pub const MAX_VOXEL_BYTES: usize = 1 << 33;

/// Reads a single-file NIfTI-1 volume.
pub fn read(path: &Path) -> Result<Volume> {
    let raw = std::fs::read(path).map_err(|e| NiftiError::new(path, format!("cannot read file: {e}")))?;
    from_bytes(&raw, path)
}

/// [`read`] on a file's bytes (gzip-compressed or not); `path` names them in
/// errors. A gzip stream is decompressed only as far as the header says the
/// volume reaches, so a crafted stream cannot make it allocate more.
pub fn from_bytes(raw: &[u8], path: &Path) -> Result<Volume> {
    let gz = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    let gunzipped;
    let bytes: &[u8] = if gz {
        let corrupt = |e: std::io::Error| NiftiError::new(path, format!("gzip stream is truncated or corrupt ({e}); re-download or re-compress the file"));
        let mut stream = flate2::read::MultiGzDecoder::new(raw);
        let mut head = Vec::with_capacity(header::HEADER_SIZE);
        (&mut stream).take(header::HEADER_SIZE as u64).read_to_end(&mut head).map_err(corrupt)?;
        let h = Header::parse(&head, path)?;
        let need = voxel_extent(&h, path)?;
        let mut out = head;
        stream.take((need - out.len().min(need)) as u64).read_to_end(&mut out).map_err(corrupt)?;
        gunzipped = out;
        &gunzipped
    } else {
        raw
    };
    let header = Header::parse(bytes, path)?;
    let shape = header.shape();
    // First: it refuses dimensions whose product overflows, which the plain
    // product below would panic on (found by the nifti fuzz target).
    let need = voxel_extent(&header, path)?;
    let n: usize = shape.iter().product();
    let width = header.datatype.bytes();
    let start = header.data_offset();
    if need > bytes.len() {
        return Err(NiftiError::new(
            path,
            format!(
                "dimensions {shape:?} of {:?} ({width} bytes each) need {} bytes of voxel data after offset {start}, \
                 but the file has {} bytes after it: truncated, or the header's dimensions are wrong",
                header.datatype,
                n * width,
                bytes.len().saturating_sub(start)
            ),
        ));
    }
    let mut data = header.datatype.decode(&bytes[start..need], header.big_endian);
    if let Some((slope, inter)) = header.scaling() {
        for v in &mut data {
            *v = (*v as f64 * slope + inter) as f32;
        }
    }
    Ok(Volume { header, shape, data })
}

/// Where the header says the voxel data ends (offset + voxels x width), or an
/// error when that overflows or passes [`MAX_VOXEL_BYTES`].
fn voxel_extent(h: &Header, path: &Path) -> Result<usize> {
    let shape = h.shape();
    let bytes = shape.iter().try_fold(h.datatype.bytes(), |acc, &d| acc.checked_mul(d)).filter(|&b| b <= MAX_VOXEL_BYTES);
    match bytes.and_then(|b| b.checked_add(h.data_offset())) {
        Some(end) => Ok(end),
        None => Err(NiftiError::new(
            path,
            format!(
                "dimensions {shape:?} of {:?} claim more than {} GiB of voxels: a corrupt header, or a volume far too large",
                h.datatype,
                MAX_VOXEL_BYTES >> 30
            ),
        )),
    }
}

/// What [`write`] stores.
#[derive(Debug, Clone)]
pub struct WriteSpec {
    pub shape: [usize; 3],
    pub datatype: DataType,
    /// Stored value = (value - inter) / slope, rounded for integer types.
    pub slope: f32,
    pub inter: f32,
    /// Rows of the voxel-to-world affine (written as the sform, code 1).
    pub affine: [[f32; 4]; 3],
}

impl WriteSpec {
    /// A float32 volume with an identity affine.
    pub fn float(shape: [usize; 3]) -> Self {
        WriteSpec { shape, datatype: DataType::Float32, slope: 1.0, inter: 0.0, affine: [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]] }
    }
}

/// Writes a little-endian single-file NIfTI-1 volume, gzip-compressed when
/// the name ends in `.gz`.
pub fn write(path: &Path, spec: &WriteSpec, data: &[f32]) -> Result<()> {
    let n: usize = spec.shape.iter().product();
    if data.len() != n {
        return Err(NiftiError::new(path, format!("{} values for a volume of {:?}", data.len(), spec.shape)));
    }
    let mut bytes = header::encode(spec);
    let slope = if spec.slope == 0.0 { 1.0 } else { spec.slope };
    spec.datatype.encode(data.iter().map(|&v| (v - spec.inter) / slope), &mut bytes);
    let io = |e: std::io::Error| NiftiError::new(path, format!("cannot write: {e}"));
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    if gz {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(&bytes).map_err(io)?;
        enc.finish().map_err(io)?.flush().map_err(io)?;
    } else {
        f.write_all(&bytes).map_err(io)?;
        f.flush().map_err(io)?;
    }
    Ok(())
}

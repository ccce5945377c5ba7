//! The 348-byte NIfTI-1 header: the fields a reader needs, byte order
//! detected from `sizeof_hdr`.

use std::path::Path;

use crate::{NiftiError, Result, WriteSpec};

pub(crate) const HEADER_SIZE: usize = 348;

/// Voxel types NIfTI-1 defines that medical data sets use (complex and RGB
/// types are refused with a clear error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Uint8,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
}

impl DataType {
    fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => DataType::Uint8,
            4 => DataType::Int16,
            8 => DataType::Int32,
            16 => DataType::Float32,
            64 => DataType::Float64,
            256 => DataType::Int8,
            512 => DataType::Uint16,
            768 => DataType::Uint32,
            1024 => DataType::Int64,
            1280 => DataType::Uint64,
            _ => return None,
        })
    }

    fn code(self) -> i16 {
        match self {
            DataType::Uint8 => 2,
            DataType::Int16 => 4,
            DataType::Int32 => 8,
            DataType::Float32 => 16,
            DataType::Float64 => 64,
            DataType::Int8 => 256,
            DataType::Uint16 => 512,
            DataType::Uint32 => 768,
            DataType::Int64 => 1024,
            DataType::Uint64 => 1280,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            DataType::Uint8 | DataType::Int8 => 1,
            DataType::Int16 | DataType::Uint16 => 2,
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => 4,
            DataType::Int64 | DataType::Uint64 | DataType::Float64 => 8,
        }
    }

    /// Raw voxel bytes to `f32` (unscaled).
    pub(crate) fn decode(self, raw: &[u8], big_endian: bool) -> Vec<f32> {
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                raw.chunks_exact($n)
                    .map(|c| {
                        let b: [u8; $n] = c.try_into().unwrap();
                        (if big_endian { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) }) as f32
                    })
                    .collect()
            };
        }
        match self {
            DataType::Uint8 => raw.iter().map(|&v| v as f32).collect(),
            DataType::Int8 => raw.iter().map(|&v| v as i8 as f32).collect(),
            DataType::Int16 => conv!(i16, 2),
            DataType::Uint16 => conv!(u16, 2),
            DataType::Int32 => conv!(i32, 4),
            DataType::Uint32 => conv!(u32, 4),
            DataType::Int64 => conv!(i64, 8),
            DataType::Uint64 => conv!(u64, 8),
            DataType::Float32 => conv!(f32, 4),
            DataType::Float64 => conv!(f64, 8),
        }
    }

    /// Stored values (already unscaled) to little-endian bytes, rounded and
    /// saturated for integer types.
    pub(crate) fn encode(self, values: impl Iterator<Item = f32>, out: &mut Vec<u8>) {
        for v in values {
            let r = v.round();
            match self {
                DataType::Uint8 => out.push(r as u8),
                DataType::Int8 => out.push(r as i8 as u8),
                DataType::Int16 => out.extend((r as i16).to_le_bytes()),
                DataType::Uint16 => out.extend((r as u16).to_le_bytes()),
                DataType::Int32 => out.extend((r as i32).to_le_bytes()),
                DataType::Uint32 => out.extend((r as u32).to_le_bytes()),
                DataType::Int64 => out.extend((r as i64).to_le_bytes()),
                DataType::Uint64 => out.extend((r as u64).to_le_bytes()),
                DataType::Float32 => out.extend(v.to_le_bytes()),
                DataType::Float64 => out.extend((v as f64).to_le_bytes()),
            }
        }
    }
}

/// The header fields multiad uses.
#[derive(Debug, Clone)]
pub struct Header {
    pub big_endian: bool,
    /// `dim[0]` and `dim[1..=7]`.
    pub dim: [i16; 8],
    pub datatype: DataType,
    pub pixdim: [f32; 8],
    pub vox_offset: f32,
    pub scl_slope: f32,
    pub scl_inter: f32,
    pub qform_code: i16,
    pub sform_code: i16,
    /// quatern_b, c, d and qoffset_x, y, z.
    pub quatern: [f32; 6],
    pub srow: [[f32; 4]; 3],
}

struct Fields<'a> {
    b: &'a [u8],
    big: bool,
}

impl Fields<'_> {
    fn i16(&self, at: usize) -> i16 {
        let v = [self.b[at], self.b[at + 1]];
        if self.big {
            i16::from_be_bytes(v)
        } else {
            i16::from_le_bytes(v)
        }
    }
    fn i32(&self, at: usize) -> i32 {
        let v: [u8; 4] = self.b[at..at + 4].try_into().unwrap();
        if self.big {
            i32::from_be_bytes(v)
        } else {
            i32::from_le_bytes(v)
        }
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_bits(self.i32(at) as u32)
    }
}

impl Header {
    pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Header> {
        if bytes.len() < HEADER_SIZE {
            return Err(NiftiError::new(path, format!("{} bytes: too short for a NIfTI-1 header (348 bytes); truncated or not NIfTI", bytes.len())));
        }
        let le = i32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let be = i32::from_be_bytes(bytes[0..4].try_into().unwrap());
        let big = match (le, be) {
            (348, _) => false,
            (_, 348) => true,
            (540, _) | (_, 540) => return Err(NiftiError::new(path, "a NIfTI-2 file: only NIfTI-1 is supported (convert with nibabel or fslchfiletype)")),
            _ => return Err(NiftiError::new(path, format!("not a NIfTI-1 file: sizeof_hdr is {le}, expected 348"))),
        };
        let magic = &bytes[344..348];
        match magic {
            b"n+1\0" => {}
            b"ni1\0" => return Err(NiftiError::new(path, "header of a .hdr/.img pair (magic ni1): only single-file .nii/.nii.gz is supported")),
            _ => {
                return Err(NiftiError::new(
                    path,
                    format!("wrong magic {:?} at byte 344 (expected \"n+1\"): not NIfTI-1, or an old ANALYZE file", String::from_utf8_lossy(magic)),
                ))
            }
        }
        let f = Fields { b: bytes, big };
        let mut dim = [0i16; 8];
        for (i, d) in dim.iter_mut().enumerate() {
            *d = f.i16(40 + 2 * i);
        }
        if !(1..=7).contains(&dim[0]) {
            return Err(NiftiError::new(path, format!("dim[0] = {} is not a number of dimensions (1 to 7)", dim[0])));
        }
        if let Some(bad) = (1..=dim[0] as usize).find(|&i| dim[i] < 1) {
            return Err(NiftiError::new(path, format!("dim[{bad}] = {} in dimensions {:?}", dim[bad], &dim[1..=dim[0] as usize])));
        }
        let code = f.i16(70);
        let datatype = DataType::from_code(code)
            .ok_or_else(|| NiftiError::new(path, format!("datatype {code} is not supported (complex, RGB and 128-bit types are not)")))?;
        let mut pixdim = [0f32; 8];
        for (i, p) in pixdim.iter_mut().enumerate() {
            *p = f.f32(76 + 4 * i);
        }
        let vox_offset = f.f32(108);
        if !(vox_offset.is_finite() && vox_offset >= HEADER_SIZE as f32) {
            return Err(NiftiError::new(path, format!("vox_offset {vox_offset} is inside the header (must be >= 348)")));
        }
        let mut quatern = [0f32; 6];
        for (i, q) in quatern.iter_mut().enumerate() {
            *q = f.f32(256 + 4 * i);
        }
        let mut srow = [[0f32; 4]; 3];
        for (r, row) in srow.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.f32(280 + 16 * r + 4 * c);
            }
        }
        Ok(Header {
            big_endian: big,
            dim,
            datatype,
            pixdim,
            vox_offset,
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            qform_code: f.i16(252),
            sform_code: f.i16(254),
            quatern,
            srow,
        })
    }

    pub fn shape(&self) -> Vec<usize> {
        (1..=self.dim[0] as usize).map(|i| self.dim[i] as usize).collect()
    }

    pub(crate) fn data_offset(&self) -> usize {
        self.vox_offset as usize
    }

    /// (slope, intercept) when the header asks for scaling: the standard says
    /// a slope of 0 means none.
    pub fn scaling(&self) -> Option<(f64, f64)> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        (s != 0.0 && s.is_finite()).then_some((s as f64, if i.is_finite() { i as f64 } else { 0.0 }))
    }

    /// Rows of the voxel-to-world affine: sform when its code is set, else the
    /// qform quaternion, else plain voxel sizes (NIfTI's method 1).
    pub fn affine(&self) -> [[f32; 4]; 3] {
        if self.sform_code > 0 {
            return self.srow;
        }
        let px = |i: usize| if self.pixdim[i] > 0.0 { self.pixdim[i] } else { 1.0 };
        if self.qform_code <= 0 {
            return [[px(1), 0.0, 0.0, 0.0], [0.0, px(2), 0.0, 0.0], [0.0, 0.0, px(3), 0.0]];
        }
        let [b, c, d, x, y, z] = self.quatern;
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let r = [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c)],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b)],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ];
        let qfac = if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [px(1), px(2), px(3) * qfac];
        let offset = [x, y, z];
        let mut out = [[0f32; 4]; 3];
        for row in 0..3 {
            for col in 0..3 {
                out[row][col] = r[row][col] * scale[col];
            }
            out[row][3] = offset[row];
        }
        out
    }
}

/// A header (plus the 4 empty extension bytes) for [`crate::write`].
pub(crate) fn encode(spec: &WriteSpec) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_SIZE + 4];
    let put = |h: &mut Vec<u8>, at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
    put(&mut h, 0, &348i32.to_le_bytes());
    let dims = [3i16, spec.shape[0] as i16, spec.shape[1] as i16, spec.shape[2] as i16, 1, 1, 1, 1];
    for (i, d) in dims.iter().enumerate() {
        put(&mut h, 40 + 2 * i, &d.to_le_bytes());
    }
    put(&mut h, 70, &spec.datatype.code().to_le_bytes());
    put(&mut h, 72, &((spec.datatype.bytes() * 8) as i16).to_le_bytes());
    let vsize = |r: usize| (0..3).map(|row| spec.affine[row][r] * spec.affine[row][r]).sum::<f32>().sqrt();
    let pixdim = [1.0f32, vsize(0), vsize(1), vsize(2), 0.0, 0.0, 0.0, 0.0];
    for (i, p) in pixdim.iter().enumerate() {
        put(&mut h, 76 + 4 * i, &p.to_le_bytes());
    }
    put(&mut h, 108, &((HEADER_SIZE + 4) as f32).to_le_bytes());
    put(&mut h, 112, &spec.slope.to_le_bytes());
    put(&mut h, 116, &spec.inter.to_le_bytes());
    put(&mut h, 254, &1i16.to_le_bytes());
    for (r, row) in spec.affine.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            put(&mut h, 280 + 16 * r + 4 * c, &v.to_le_bytes());
        }
    }
    put(&mut h, 344, b"n+1\0");
    h
}

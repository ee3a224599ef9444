//! Reader for CTranslate2's `model.bin`.
//!
//! Layout (little endian; strings are a u16 byte length followed by the bytes and a NUL):
//! `u32 version`, then (version ≥ 2) `string spec_name`, `u32 spec_revision`;
//! `u32 variable_count`, each variable being `string name`, `u8 rank`, `u32 dims[rank]`,
//! `u8 dtype`, `u32 byte_len`, `bytes`; then (version ≥ 3) `u32 alias_count`, each alias
//! being `string alias`, `string target`.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model.bin is truncated at byte {at} (reading {what})")]
    Truncated { at: usize, what: &'static str },
    #[error("model.bin format version {0} is not supported (expected 4 to 6)")]
    UnsupportedVersion(u32),
    #[error("model.bin variable {name} has unknown dtype code {code}")]
    UnknownDType { name: String, code: u8 },
    #[error("model.bin variable {name}: {bytes} bytes do not fit shape {shape:?} of {dtype:?}")]
    SizeMismatch {
        name: String,
        bytes: usize,
        shape: Vec<usize>,
        dtype: Ct2DType,
    },
    #[error("model.bin lacks variable {0}")]
    Missing(String),
    #[error("model.bin variable {name}: {reason}")]
    Unusable { name: String, reason: String },
}

/// Element types CTranslate2 stores (its `DataType` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl Ct2DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Ct2DType::F32,
            1 => Ct2DType::I8,
            2 => Ct2DType::I16,
            3 => Ct2DType::I32,
            4 => Ct2DType::F16,
            5 => Ct2DType::BF16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Ct2DType::I8 => 1,
            Ct2DType::I16 | Ct2DType::F16 | Ct2DType::BF16 => 2,
            Ct2DType::F32 | Ct2DType::I32 => 4,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ct2Variable {
    pub shape: Vec<usize>,
    pub dtype: Ct2DType,
    bytes: Range<usize>,
}

/// A parsed `model.bin`: variables index into the file's bytes, which stay in memory once.
pub struct Ct2Model {
    pub spec_name: String,
    pub spec_revision: u32,
    data: Vec<u8>,
    variables: HashMap<String, Ct2Variable>,
    aliases: HashMap<String, String>,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Ct2Error> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.data.len());
        let end = end.ok_or(Ct2Error::Truncated { at: self.at, what })?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, Ct2Error> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Ct2Error> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, Ct2Error> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn string(&mut self, what: &'static str) -> Result<String, Ct2Error> {
        let len = self.u16(what)? as usize;
        let bytes = self.take(len, what)?;
        let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl Ct2Model {
    pub fn read(path: &Path) -> Result<Self, Ct2Error> {
        let data = std::fs::read(path).map_err(|source| Ct2Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, Ct2Error> {
        let mut cursor = Cursor { data: &data, at: 0 };
        let version = cursor.u32("version")?;
        if !(4..=6).contains(&version) {
            return Err(Ct2Error::UnsupportedVersion(version));
        }
        let spec_name = cursor.string("spec name")?;
        let spec_revision = cursor.u32("spec revision")?;
        let count = cursor.u32("variable count")?;
        let mut variables = HashMap::with_capacity(count as usize);
        for _ in 0..count {
            let name = cursor.string("variable name")?;
            let rank = cursor.u8("rank")? as usize;
            let shape = (0..rank)
                .map(|_| cursor.u32("dimension").map(|d| d as usize))
                .collect::<Result<Vec<_>, _>>()?;
            let code = cursor.u8("dtype")?;
            let dtype = Ct2DType::from_code(code).ok_or_else(|| Ct2Error::UnknownDType {
                name: name.clone(),
                code,
            })?;
            let len = cursor.u32("byte length")? as usize;
            let start = cursor.at;
            cursor.take(len, "variable data")?;
            if shape.iter().product::<usize>() * dtype.size() != len {
                return Err(Ct2Error::SizeMismatch {
                    name,
                    bytes: len,
                    shape,
                    dtype,
                });
            }
            variables.insert(
                name,
                Ct2Variable {
                    shape,
                    dtype,
                    bytes: start..start + len,
                },
            );
        }
        let mut aliases = HashMap::new();
        let alias_count = cursor.u32("alias count")?;
        for _ in 0..alias_count {
            let alias = cursor.string("alias")?;
            let target = cursor.string("alias target")?;
            aliases.insert(alias, target);
        }
        Ok(Self {
            spec_name,
            spec_revision,
            data,
            variables,
            aliases,
        })
    }

    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    pub fn variable(&self, name: &str) -> Result<&Ct2Variable, Ct2Error> {
        let name = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.variables
            .get(name)
            .ok_or_else(|| Ct2Error::Missing(name.to_string()))
    }

    /// A variable as an f32 tensor on `device`.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor, Ct2Error> {
        let variable = self.variable(name)?;
        let unusable = |e: candle_core::Error| Ct2Error::Unusable {
            name: name.to_string(),
            reason: e.to_string(),
        };
        let dtype = match variable.dtype {
            Ct2DType::F32 => DType::F32,
            Ct2DType::F16 => DType::F16,
            Ct2DType::BF16 => DType::BF16,
            other => {
                return Err(Ct2Error::Unusable {
                    name: name.to_string(),
                    reason: format!("{other:?} is not a float type"),
                })
            }
        };
        let bytes = &self.data[variable.bytes.clone()];
        Tensor::from_raw_buffer(bytes, dtype, &variable.shape, device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(unusable)
    }

    /// A scalar integer setting (CTranslate2 stores e.g. `num_heads` as an int16 scalar).
    pub fn integer(&self, name: &str) -> Result<i64, Ct2Error> {
        let variable = self.variable(name)?;
        let bytes = &self.data[variable.bytes.clone()];
        if variable.shape.iter().product::<usize>() != 1 {
            return Err(Ct2Error::Unusable {
                name: name.to_string(),
                reason: "not a scalar".into(),
            });
        }
        Ok(match variable.dtype {
            Ct2DType::I8 => bytes[0] as i8 as i64,
            Ct2DType::I16 => i16::from_le_bytes([bytes[0], bytes[1]]) as i64,
            Ct2DType::I32 => i32::from_le_bytes(bytes.try_into().expect("4 bytes")) as i64,
            other => {
                return Err(Ct2Error::Unusable {
                    name: name.to_string(),
                    reason: format!("{other:?} is not an integer type"),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    fn variable(out: &mut Vec<u8>, name: &str, shape: &[u32], dtype: u8, bytes: &[u8]) {
        string(out, name);
        out.push(shape.len() as u8);
        for d in shape {
            out.extend(d.to_le_bytes());
        }
        out.push(dtype);
        out.extend((bytes.len() as u32).to_le_bytes());
        out.extend(bytes);
    }

    fn sample_file() -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend(3u32.to_le_bytes());
        out.extend(2u32.to_le_bytes());
        // 1.0, -2.5, 0.25, 3.0 as IEEE half floats.
        let halves: Vec<u8> = [0x3C00u16, 0xC100, 0x3400, 0x4200]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        variable(&mut out, "w", &[2, 2], 4, &halves);
        variable(&mut out, "heads", &[], 2, &6i16.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        string(&mut out, "alias_w");
        string(&mut out, "w");
        out
    }

    #[test]
    fn reads_shapes_halves_scalars_and_aliases() {
        let model = Ct2Model::parse(sample_file()).unwrap();
        assert_eq!(model.spec_name, "WhisperSpec");
        assert_eq!(model.spec_revision, 3);
        let w = model.tensor("alias_w", &Device::Cpu).unwrap();
        assert_eq!(w.dims(), &[2, 2]);
        assert_eq!(
            w.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, -2.5], vec![0.25, 3.0]]
        );
        assert_eq!(model.integer("heads").unwrap(), 6);
        assert!(matches!(
            model.tensor("nope", &Device::Cpu),
            Err(Ct2Error::Missing(_))
        ));
    }

    #[test]
    fn rejects_truncated_files_and_wrong_sizes() {
        let file = sample_file();
        let cut = file[..file.len() - 10].to_vec();
        assert!(matches!(
            Ct2Model::parse(cut),
            Err(Ct2Error::Truncated { .. })
        ));

        let mut wrong = Vec::new();
        wrong.extend(6u32.to_le_bytes());
        string(&mut wrong, "WhisperSpec");
        wrong.extend(3u32.to_le_bytes());
        wrong.extend(1u32.to_le_bytes());
        variable(&mut wrong, "w", &[3], 4, &[0, 0, 0, 0]);
        wrong.extend(0u32.to_le_bytes());
        assert!(matches!(
            Ct2Model::parse(wrong),
            Err(Ct2Error::SizeMismatch { .. })
        ));

        let mut old = Vec::new();
        old.extend(1u32.to_le_bytes());
        assert!(matches!(
            Ct2Model::parse(old),
            Err(Ct2Error::UnsupportedVersion(1))
        ));
    }
}

//! Low-rank adapters for the sentence encoder: small corrections to the top layers' weight
//! matrices, learned from the corpus by [`super::adapt`], that teach the encoder which
//! differences between sentences matter for risk. They are added into the weights when the
//! encoder loads (`W + scale · B·A`), so an adapted encoder costs exactly as much to run as the
//! plain one.
//!
//! The adapters are compiled into the binary (`corpus/risk-adapters.bin`, written by
//! `counsel safety adapt`) beside the head, so the binary, its head and its adapters always
//! travel together; the encoder's own weights stay as `counsel models install` verified them.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

const MAGIC: &[u8; 16] = b"counsel-adapters";
const FORMAT_VERSION: u32 = 1;

/// The adapters this binary ships with.
pub const SHIPPED_BYTES: &[u8] = include_bytes!("../../corpus/risk-adapters.bin");

/// One weight matrix's correction: `scale · up · down`, with `down` of shape `rank × inputs` and
/// `up` of shape `outputs × rank`.
#[derive(Debug, Clone, PartialEq)]
pub struct LowRank {
    /// The weight's name in the encoder's safetensors file.
    pub weight: String,
    pub outputs: usize,
    pub inputs: usize,
    pub down: Vec<f32>,
    pub up: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adapters {
    /// The corpus they were learned from (informative: a head refitted after the corpus grows
    /// keeps the adapters it was fitted with).
    pub corpus_fingerprint: [u8; 32],
    pub rank: usize,
    pub scale: f32,
    pub matrices: Vec<LowRank>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdaptersError {
    #[error("not an adapters file (bad magic bytes)")]
    Magic,
    #[error("adapters format {0} is not supported (expected {FORMAT_VERSION})")]
    Version(u32),
    #[error("adapters file is truncated or malformed")]
    Truncated,
    #[error("the adapters change {0}, which the encoder does not have")]
    UnknownWeight(String),
    #[error("the adapters for {weight} are {outputs}×{inputs}; the encoder's weight is {actual}")]
    Shape {
        weight: String,
        outputs: usize,
        inputs: usize,
        actual: String,
    },
    #[error("merging the adapters failed: {0}")]
    Merge(String),
}

impl Adapters {
    /// The adapters compiled into this binary.
    pub fn shipped() -> Result<Adapters, AdaptersError> {
        Adapters::from_bytes(SHIPPED_BYTES)
    }

    /// Adds each correction into its weight.
    pub fn merge_into(&self, weights: &mut HashMap<String, Tensor>) -> Result<(), AdaptersError> {
        let merge = |e: candle_core::Error| AdaptersError::Merge(e.to_string());
        for m in &self.matrices {
            let base = weights
                .get(&m.weight)
                .ok_or_else(|| AdaptersError::UnknownWeight(m.weight.clone()))?;
            if base.dims() != [m.outputs, m.inputs] {
                return Err(AdaptersError::Shape {
                    weight: m.weight.clone(),
                    outputs: m.outputs,
                    inputs: m.inputs,
                    actual: format!("{:?}", base.dims()),
                });
            }
            let down =
                Tensor::from_slice(&m.down, (self.rank, m.inputs), &Device::Cpu).map_err(merge)?;
            let up =
                Tensor::from_slice(&m.up, (m.outputs, self.rank), &Device::Cpu).map_err(merge)?;
            let delta =
                (up.matmul(&down).map_err(merge)? * f64::from(self.scale)).map_err(merge)?;
            let merged = (base.to_dtype(delta.dtype()).map_err(merge)? + delta).map_err(merge)?;
            weights.insert(m.weight.clone(), merged);
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.corpus_fingerprint);
        out.extend_from_slice(&(self.rank as u32).to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        out.extend_from_slice(&(self.matrices.len() as u32).to_le_bytes());
        for m in &self.matrices {
            out.extend_from_slice(&(m.weight.len() as u32).to_le_bytes());
            out.extend_from_slice(m.weight.as_bytes());
            out.extend_from_slice(&(m.outputs as u32).to_le_bytes());
            out.extend_from_slice(&(m.inputs as u32).to_le_bytes());
            for x in m.down.iter().chain(&m.up) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Adapters, AdaptersError> {
        let mut r = super::bytes::Reader::new(bytes);
        r.header(MAGIC, FORMAT_VERSION)?;
        let corpus_fingerprint: [u8; 32] = r.digest()?;
        let rank = r.u32()? as usize;
        let scale = f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
        let count = r.u32()? as usize;
        let mut matrices = Vec::new();
        for _ in 0..count {
            let name_len = r.u32()? as usize;
            let weight = std::str::from_utf8(r.take(name_len)?)
                .map_err(|_| AdaptersError::Truncated)?
                .to_owned();
            let outputs = r.u32()? as usize;
            let inputs = r.u32()? as usize;
            let down = r.floats(rank * inputs)?;
            let up = r.floats(outputs * rank)?;
            matrices.push(LowRank {
                weight,
                outputs,
                inputs,
                down,
                up,
            });
        }
        if !r.is_done() {
            return Err(AdaptersError::Truncated);
        }
        Ok(Adapters {
            corpus_fingerprint,
            rank,
            scale,
            matrices,
        })
    }
}

impl From<super::bytes::BadHeader> for AdaptersError {
    fn from(bad: super::bytes::BadHeader) -> Self {
        match bad {
            super::bytes::BadHeader::Truncated => AdaptersError::Truncated,
            super::bytes::BadHeader::Magic => AdaptersError::Magic,
            super::bytes::BadHeader::Version(found) => AdaptersError::Version(found),
        }
    }
}

impl From<super::bytes::Truncated> for AdaptersError {
    fn from(_: super::bytes::Truncated) -> Self {
        AdaptersError::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Adapters {
        Adapters {
            corpus_fingerprint: [3; 32],
            rank: 1,
            scale: 2.0,
            matrices: vec![LowRank {
                weight: "w".into(),
                outputs: 2,
                inputs: 3,
                down: vec![1.0, 0.0, -1.0],
                up: vec![0.5, 1.0],
            }],
        }
    }

    #[test]
    fn merging_adds_the_scaled_low_rank_product() {
        let mut weights = HashMap::new();
        weights.insert(
            "w".to_owned(),
            Tensor::ones((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        example().merge_into(&mut weights).unwrap();
        let merged: Vec<Vec<f32>> = weights["w"].to_vec2().unwrap();
        assert_eq!(merged, vec![vec![2.0, 1.0, 0.0], vec![3.0, 1.0, -1.0]]);
    }

    #[test]
    fn adapters_for_another_encoder_are_refused() {
        let mut weights = HashMap::new();
        assert_eq!(
            example().merge_into(&mut weights),
            Err(AdaptersError::UnknownWeight("w".into()))
        );
        weights.insert(
            "w".to_owned(),
            Tensor::ones((3, 3), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
        assert!(matches!(
            example().merge_into(&mut weights),
            Err(AdaptersError::Shape { .. })
        ));
    }

    #[test]
    fn adapters_round_trip_and_damaged_files_are_refused() {
        let bytes = example().to_bytes();
        assert_eq!(Adapters::from_bytes(&bytes).unwrap(), example());
        assert_eq!(
            Adapters::from_bytes(&bytes[..bytes.len() - 1]),
            Err(AdaptersError::Truncated)
        );
        assert_eq!(Adapters::from_bytes(&[0u8; 64]), Err(AdaptersError::Magic));
    }
}

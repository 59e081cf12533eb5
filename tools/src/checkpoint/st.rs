//! safetensors files: a little-endian u64 header length, a JSON header, then
//! contiguous little-endian tensor data. Parsing and validation are the
//! `safetensors` crate's; this converts every tensor to `f32` in file order.

use safetensors::tensor::Dtype as StDtype;
use safetensors::SafeTensors;

use super::dtype::Dtype;
use super::{Budget, CheckpointError, RawTensor};

/// Cheap sniff: a plausible header length followed by a JSON object.
pub(crate) fn looks_like_safetensors(bytes: &[u8]) -> bool {
    let Some(len) = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
        return false;
    };
    let n = u64::from_le_bytes(len);
    let available = bytes.len().saturating_sub(8) as u64;
    n >= 2 && n <= available && bytes.get(8) == Some(&b'{')
}

fn dtype(d: StDtype) -> Option<Dtype> {
    Some(match d {
        StDtype::F64 => Dtype::F64,
        StDtype::F32 => Dtype::F32,
        StDtype::F16 => Dtype::F16,
        StDtype::BF16 => Dtype::BF16,
        StDtype::I64 => Dtype::I64,
        StDtype::I32 => Dtype::I32,
        StDtype::I16 => Dtype::I16,
        StDtype::I8 => Dtype::I8,
        StDtype::U64 => Dtype::U64,
        StDtype::U32 => Dtype::U32,
        StDtype::U16 => Dtype::U16,
        StDtype::U8 => Dtype::U8,
        StDtype::BOOL => Dtype::Bool,
        _ => return None,
    })
}

pub(crate) fn read(
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<(String, RawTensor)>, CheckpointError> {
    let (header_len, metadata) = SafeTensors::read_metadata(bytes)
        .map_err(|e| CheckpointError::SafeTensors(e.to_string()))?;
    let data = bytes
        .get(header_len.saturating_add(8)..)
        .ok_or_else(|| CheckpointError::Truncated("safetensors header".into()))?;
    // The crate keeps tensors in a map; data offsets give the file order.
    let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
    infos.sort_by_key(|(name, info)| (info.data_offsets, name.clone()));
    let mut out = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let dt = dtype(info.dtype).ok_or_else(|| CheckpointError::UnsupportedDtype {
            key: name.clone(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let (start, end) = info.data_offsets;
        let raw = data.get(start..end).ok_or_else(|| CheckpointError::BadTensor {
            key: name.clone(),
            what: "data offsets lie outside the file".into(),
        })?;
        let numel = info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n.checked_mul(dt.size()) == Some(raw.len()))
            .ok_or_else(|| CheckpointError::BadTensor {
                key: name.clone(),
                what: "shape does not match its data size".into(),
            })?;
        budget.take(numel)?;
        let mut values = Vec::new();
        dt.extend_f32(raw, false, &mut values);
        out.push((name, RawTensor { shape: info.shape.clone(), data: values }));
    }
    Ok(out)
}

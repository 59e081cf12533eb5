//! The pre-1.6 `torch.save` layout (still written with
//! `_use_new_zipfile_serialization=False`): five pickles in a row — magic
//! number, protocol version, sys info, the object, the sorted storage keys —
//! then each storage as an element count (8 bytes, file byte order) followed
//! by its raw elements.

use std::collections::HashMap;

use super::dtype::Dtype;
use super::{
    collect_storage_refs, tensors_from_pickle, Budget, CheckpointError, RawTensor, StorageSource,
};
use crate::pickle::{self, Value};

/// `0x1950a86a20f9469cfc6c` as little-endian two's-complement bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// True if `bytes` begins with the magic-number pickle in any protocol (protocols
/// 0 and 1 have no `PROTO` opcode to sniff).
pub(crate) fn starts_with_magic(bytes: &[u8]) -> bool {
    let head = bytes.get(..64).unwrap_or(bytes);
    matches!(pickle::parse_prefix(head), Ok((Value::BigInt(b), _)) if b == MAGIC)
}

pub(crate) fn read(
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<(String, RawTensor)>, CheckpointError> {
    let mut pos = 0usize;
    let mut next = |part: &str| -> Result<Value, CheckpointError> {
        let rest = bytes.get(pos..).unwrap_or_default();
        let (v, used) = pickle::parse_prefix(rest).map_err(|e| CheckpointError::pickle(part, e))?;
        pos += used;
        Ok(v)
    };

    let magic = next("legacy magic number")?;
    if magic != Value::BigInt(MAGIC.to_vec()) {
        return Err(CheckpointError::UnsupportedFormat(
            "a Python pickle without the PyTorch magic number: not a PyTorch checkpoint".into(),
        ));
    }
    let protocol = next("legacy protocol version")?;
    if protocol.as_int() != Some(PROTOCOL_VERSION) {
        return Err(CheckpointError::UnsupportedFormat(format!(
            "legacy checkpoint protocol {protocol:?} (only {PROTOCOL_VERSION} is known)"
        )));
    }
    let sys_info = next("legacy sys info")?;
    let big_endian = match sys_info.get("little_endian") {
        None | Some(Value::Bool(true)) => false,
        Some(Value::Bool(false)) => true,
        Some(other) => {
            return Err(CheckpointError::Corrupt(format!(
                "sys info little_endian is a {}",
                other.type_name()
            )))
        }
    };
    let root = next("data pickle")?;
    let keys = next("storage key list")?;
    let keys = keys
        .as_items()
        .ok_or_else(|| CheckpointError::Corrupt("storage key list is not a list".into()))?;

    let mut refs = Vec::new();
    collect_storage_refs(&root, &mut refs);
    let mut dtypes: HashMap<&str, Dtype> = HashMap::new();
    for r in &refs {
        dtypes.entry(r.key.as_str()).or_insert(r.dtype);
    }

    let mut storages: HashMap<String, (usize, usize)> = HashMap::new();
    for key in keys {
        let key = match key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => {
                return Err(CheckpointError::Corrupt(format!(
                    "storage key is a {}",
                    other.type_name()
                )))
            }
        };
        let dtype = *dtypes.get(key.as_str()).ok_or_else(|| {
            CheckpointError::Corrupt(format!(
                "storage `{key}` is listed but no tensor uses it, so its size is unknown"
            ))
        })?;
        let header: [u8; 8] =
            bytes.get(pos..).and_then(|r| r.get(..8)).and_then(|h| h.try_into().ok()).ok_or_else(
                || CheckpointError::Truncated(format!("file ends before storage `{key}`")),
            )?;
        let count =
            if big_endian { u64::from_be_bytes(header) } else { u64::from_le_bytes(header) };
        let start = pos + 8;
        let available = bytes.len().saturating_sub(start);
        let nbytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size()))
            .filter(|&n| n <= available)
            .ok_or_else(|| {
                CheckpointError::Truncated(format!(
                    "storage `{key}` declares {count} {} elements but only {available} bytes \
                     remain",
                    dtype.name()
                ))
            })?;
        storages.insert(key, (start, nbytes));
        pos = start + nbytes;
    }

    let mut source = LegacySource { bytes, storages, big_endian };
    tensors_from_pickle(&root, &mut source, budget)
}

/// Storages as slices of the file.
struct LegacySource<'a> {
    bytes: &'a [u8],
    storages: HashMap<String, (usize, usize)>,
    big_endian: bool,
}

impl StorageSource for LegacySource<'_> {
    fn storage(
        &mut self,
        tensor: &str,
        key: &str,
        min_bytes: usize,
    ) -> Result<&[u8], CheckpointError> {
        let &(start, len) = self.storages.get(key).ok_or_else(|| {
            CheckpointError::MissingStorage { key: tensor.to_owned(), storage: key.to_owned() }
        })?;
        let data = self.bytes.get(start..start.saturating_add(len)).unwrap_or_default();
        crate::checkpoint::check_storage_len(tensor, key, data, min_bytes)
    }

    fn big_endian(&self) -> bool {
        self.big_endian
    }
}

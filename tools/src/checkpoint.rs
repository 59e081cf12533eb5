//! Reads PyTorch checkpoints into named `f32` tensors without Python.
//!
//! Three formats are recognised by content, not by file extension:
//!
//! - the zip archive `torch.save` writes since PyTorch 1.6 (`<dir>/data.pkl`
//!   plus one `<dir>/data/<key>` entry per storage, optional `<dir>/byteorder`);
//! - the legacy format from `_use_new_zipfile_serialization=False` and
//!   PyTorch < 1.6 (magic-number pickle, protocol pickle, sys-info pickle,
//!   the object pickle, a pickle of storage keys, then the raw storages);
//! - safetensors.
//!
//! Pickles go through the restricted reader in [`crate::pickle`], so nothing
//! in the file is executed. The state dict is found under common training
//! wrappers (`state_dict`, `model`, `model_state_dict`, `net`,
//! `state_dict_ema`, in that order of preference) or at the top level; a
//! `module.` prefix shared by every key (from `DataParallel`) is stripped;
//! non-tensor entries are skipped and file order is kept. Every storage dtype
//! (float64/32/16, bfloat16, integers, bool) is converted to `f32`, so BatchNorm
//! `num_batches_tracked` counters come back as `f32` tensors too (the
//! converter ignores them). Tensor views with offsets and arbitrary strides are
//! gathered element by element, with every index checked against the storage.

mod archive;
pub mod dtype;
mod legacy;
mod st;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::pickle::{Global, PickleError, Value};
use dtype::Dtype;

pub use dtype::{bf16_to_f32, f16_to_f32};

/// A tensor as stored in a checkpoint, converted to row-major `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    /// Dimensions; empty for a 0-dim (scalar) tensor.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` elements in C order.
    pub data: Vec<f32>,
}

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// Any other error, with the file it happened in ([`read_checkpoint`]).
    #[error("{path}: {error}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What went wrong; see [`CheckpointError::root`].
        error: Box<CheckpointError>,
    },
    /// Not a zip, legacy PyTorch, or safetensors file.
    #[error(
        "unrecognised checkpoint format: expected a PyTorch .pt/.pth file (zip or legacy) or \
         .safetensors"
    )]
    UnknownFormat,
    /// A recognised but unsupported format (e.g. TorchScript, pre-0.4 tar files).
    #[error("unsupported checkpoint format: {0}")]
    UnsupportedFormat(String),
    /// The zip container is damaged or truncated.
    #[error("corrupt or truncated zip archive: {0}")]
    Zip(zip::result::ZipError),
    /// The file ends before all of its parts.
    #[error("checkpoint is truncated: {0}")]
    Truncated(String),
    /// The file's structure is invalid.
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    /// A pickle inside the checkpoint is invalid.
    #[error("{part}: {error}")]
    Pickle {
        /// Which pickle (e.g. `data.pkl`).
        part: String,
        /// What is wrong with it.
        error: PickleError,
    },
    /// The checkpoint references code-executing globals: likely malicious.
    #[error(
        "refusing to load: the checkpoint references `{global}`, which can run code (the file \
         may be malicious)"
    )]
    ForbiddenGlobal {
        /// `module.name`, e.g. `posix.system`.
        global: String,
    },
    /// The checkpoint pickles an arbitrary Python object (e.g. a whole model).
    #[error(
        "the checkpoint contains a pickled `{global}` object, which is never constructed; save \
         a state dict instead: torch.save(model.state_dict(), path)"
    )]
    UnsupportedObject {
        /// `module.name` of the object's class or factory.
        global: String,
    },
    /// A tensor's metadata is invalid (bad shape, view outside its storage, …).
    #[error("tensor `{key}`: {what}")]
    BadTensor {
        /// State dict key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// A tensor has an element type we do not convert (complex, fp8, quantized, …).
    #[error("tensor `{key}`: unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// State dict key.
        key: String,
        /// The dtype or storage type.
        dtype: String,
    },
    /// A tensor's storage is not in the file.
    #[error("tensor `{key}`: storage `{storage}` is missing from the checkpoint")]
    MissingStorage {
        /// State dict key.
        key: String,
        /// Storage key.
        storage: String,
    },
    /// No tensors found where a state dict should be.
    #[error("no tensors found in the checkpoint: {0}")]
    NoTensors(String),
    /// The tensors would expand to far more data than the file holds.
    #[error(
        "checkpoint tensors expand to more than {limit} elements, far more than the file holds \
         (overlapping views?)"
    )]
    TooLarge {
        /// The element budget.
        limit: usize,
    },
    /// The safetensors header is invalid.
    #[error("invalid safetensors file: {0}")]
    SafeTensors(String),
}

impl CheckpointError {
    /// The underlying error, looking through [`CheckpointError::InFile`].
    pub fn root(&self) -> &CheckpointError {
        match self {
            CheckpointError::InFile { error, .. } => error.root(),
            other => other,
        }
    }

    /// Wraps a pickle error, lifting the security-relevant cases to their own variants.
    fn pickle(part: &str, error: PickleError) -> CheckpointError {
        match error {
            PickleError::ForbiddenGlobal { global, .. } => {
                CheckpointError::ForbiddenGlobal { global }
            }
            PickleError::DisallowedCall { global, .. } => {
                CheckpointError::UnsupportedObject { global }
            }
            PickleError::Truncated { .. } => CheckpointError::Truncated(format!("{part}: {error}")),
            error => CheckpointError::Pickle { part: part.to_owned(), error },
        }
    }

    fn bad_tensor(key: &str, what: impl Into<String>) -> CheckpointError {
        CheckpointError::BadTensor { key: key.to_owned(), what: what.into() }
    }
}

/// Reads a checkpoint file; errors name the path.
pub fn read_checkpoint(path: &Path) -> Result<Vec<(String, RawTensor)>, CheckpointError> {
    let bytes = std::fs::read(path)
        .map_err(|error| CheckpointError::Io { path: path.to_owned(), error })?;
    read_checkpoint_bytes(&bytes)
        .map_err(|error| CheckpointError::InFile { path: path.to_owned(), error: Box::new(error) })
}

/// Reads a checkpoint held in memory, detecting its format from the content.
pub fn read_checkpoint_bytes(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>, CheckpointError> {
    let mut budget = Budget::for_input_len(bytes.len());
    let mut tensors = if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        archive::read(bytes, &mut budget)?
    } else if st::looks_like_safetensors(bytes) {
        st::read(bytes, &mut budget)?
    } else if bytes.first() == Some(&0x80) || legacy::starts_with_magic(bytes) {
        legacy::read(bytes, &mut budget)?
    } else if bytes.get(257..262) == Some(b"ustar") {
        return Err(CheckpointError::UnsupportedFormat(
            "tar-based checkpoint from PyTorch < 0.4; re-save it with a recent PyTorch".into(),
        ));
    } else {
        return Err(CheckpointError::UnknownFormat);
    };
    if tensors.is_empty() {
        return Err(CheckpointError::NoTensors("the file holds no tensors".into()));
    }
    strip_module_prefix(&mut tensors);
    Ok(tensors)
}

/// Caps the total number of output elements relative to the input size, so
/// overlapping or zero-stride views cannot turn a small file into a huge
/// allocation.
pub(crate) struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn for_input_len(len: usize) -> Budget {
        let limit = len.saturating_mul(4).saturating_add(1 << 20);
        Budget { left: limit, limit }
    }

    fn take(&mut self, elements: usize) -> Result<(), CheckpointError> {
        self.left = self
            .left
            .checked_sub(elements)
            .ok_or(CheckpointError::TooLarge { limit: self.limit })?;
        Ok(())
    }
}

/// Where pickled checkpoints keep storage bytes.
pub(crate) trait StorageSource {
    /// The bytes of storage `key`, which must hold at least `min_bytes`.
    fn storage(
        &mut self,
        tensor: &str,
        key: &str,
        min_bytes: usize,
    ) -> Result<&[u8], CheckpointError>;

    /// Whether storages are big-endian.
    fn big_endian(&self) -> bool;
}

/// Checks that storage `key` (used by `tensor`) holds the `min_bytes` its tensors need.
pub(crate) fn check_storage_len<'a>(
    tensor: &str,
    key: &str,
    data: &'a [u8],
    min_bytes: usize,
) -> Result<&'a [u8], CheckpointError> {
    if data.len() < min_bytes {
        return Err(CheckpointError::BadTensor {
            key: tensor.to_owned(),
            what: format!(
                "storage `{key}` holds {} bytes but is declared as {min_bytes}",
                data.len()
            ),
        });
    }
    Ok(data)
}

/// A storage reference decoded from a persistent id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: Dtype,
    /// Elements in the (root) storage, as declared.
    pub numel: usize,
    /// Legacy storage views: (element offset into the root storage, element count).
    pub view: Option<(usize, usize)>,
}

/// Why a persistent id is not a usable storage reference.
#[derive(Debug, PartialEq)]
pub(crate) enum StorageRefError {
    /// A storage class we do not convert (complex, quantized, …), named.
    Unsupported(String),
    /// Anything else wrong with it.
    Invalid(String),
}

impl From<&str> for StorageRefError {
    fn from(s: &str) -> Self {
        StorageRefError::Invalid(s.to_owned())
    }
}

impl From<String> for StorageRefError {
    fn from(s: String) -> Self {
        StorageRefError::Invalid(s)
    }
}

/// Decodes `('storage', storage_type, key, location, numel[, view_metadata])`.
pub(crate) fn storage_ref(pid: &Value) -> Result<StorageRef, StorageRefError> {
    let Value::PersistentId(inner) = pid else {
        return Err(
            format!("storage argument is a {}, not a persistent id", pid.type_name()).into()
        );
    };
    let items = inner.as_items().ok_or("storage persistent id is not a tuple")?;
    let [kind, storage_type, key, _location, numel, rest @ ..] = items else {
        return Err("storage persistent id has too few fields".into());
    };
    if kind.as_str() != Some("storage") {
        return Err("persistent id is not a storage".into());
    }
    let Value::Global(g) = storage_type else {
        return Err("storage type is not a global".into());
    };
    let dtype = storage_dtype(g).ok_or_else(|| StorageRefError::Unsupported(g.to_string()))?;
    let key = match key {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => return Err(format!("storage key is a {}", other.type_name()).into()),
    };
    let numel = non_negative(numel, "storage size")?;
    let view = match rest.first() {
        None | Some(Value::None) => None,
        Some(meta) => {
            let [_view_key, offset, size] = meta.as_items().unwrap_or_default() else {
                return Err("invalid storage view metadata".into());
            };
            Some((non_negative(offset, "view offset")?, non_negative(size, "view size")?))
        }
    };
    Ok(StorageRef { key, dtype, numel, view })
}

fn storage_dtype(g: &Global) -> Option<Dtype> {
    match g.module.as_str() {
        "torch" | "torch.cuda" | "torch.storage" => Dtype::from_storage_name(&g.name),
        _ => None,
    }
}

fn non_negative(v: &Value, what: &str) -> Result<usize, String> {
    match v {
        Value::Int(i) => usize::try_from(*i).map_err(|_| format!("{what} {i} is out of range")),
        Value::Bool(b) => Ok(usize::from(*b)),
        other => Err(format!("{what} is a {}, not an int", other.type_name())),
    }
}

/// How a pickled tensor is laid out over its storage.
#[derive(Debug, PartialEq)]
struct TensorSpec {
    storage: Value,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// `None` if `v` is not a tensor; otherwise its layout or what is wrong with it.
fn tensor_spec(v: &Value) -> Option<Result<TensorSpec, String>> {
    match v {
        Value::Call { func, args } => call_spec(func, args),
        _ => None,
    }
}

fn call_spec(func: &Global, args: &[Value]) -> Option<Result<TensorSpec, String>> {
    if func.is("torch._utils", "_rebuild_tensor_v2") || func.is("torch._utils", "_rebuild_tensor") {
        return Some(rebuild_tensor(args));
    }
    if func.is("torch._utils", "_rebuild_parameter")
        || func.is("torch._utils", "_rebuild_parameter_with_state")
    {
        return match args.first().map(tensor_spec) {
            Some(Some(spec)) => Some(spec),
            _ => Some(Err("parameter does not wrap a tensor".into())),
        };
    }
    if func.is("torch._tensor", "_rebuild_from_type_v2") {
        // (func, new_type, args, state): a tensor subclass; rebuild the plain tensor.
        return match (args.first(), args.get(2).and_then(Value::as_items)) {
            (Some(Value::Global(inner)), Some(inner_args)) => call_spec(inner, inner_args),
            _ => Some(Err("invalid _rebuild_from_type_v2 arguments".into())),
        };
    }
    None
}

fn rebuild_tensor(args: &[Value]) -> Result<TensorSpec, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err("tensor rebuild call has too few arguments".into());
    };
    let dims = |v: &Value, what: &str| -> Result<Vec<usize>, String> {
        v.as_items()
            .ok_or_else(|| format!("{what} is a {}, not a tuple", v.type_name()))?
            .iter()
            .map(|d| non_negative(d, what))
            .collect()
    };
    let shape = dims(size, "size")?;
    let stride = dims(stride, "stride")?;
    if shape.len() != stride.len() {
        return Err(format!("size has {} dimensions but stride has {}", shape.len(), stride.len()));
    }
    Ok(TensorSpec {
        storage: storage.clone(),
        offset: non_negative(offset, "storage offset")?,
        shape,
        stride,
    })
}

fn is_tensor(v: &Value) -> bool {
    tensor_spec(v).is_some()
}

fn dict_has_tensors(v: &Value) -> bool {
    v.as_dict().is_some_and(|entries| entries.iter().any(|(_, v)| is_tensor(v)))
}

/// Keys under which training scripts nest the model's state dict, by preference.
const WRAPPER_KEYS: &[&str] = &["state_dict", "model", "model_state_dict", "net", "state_dict_ema"];

/// Finds the state dict: under a wrapper key (up to two levels deep), else the
/// top-level dict itself.
fn find_state_dict(root: &Value) -> Result<&[(Value, Value)], CheckpointError> {
    fn search(v: &Value, depth: usize) -> Option<&[(Value, Value)]> {
        for key in WRAPPER_KEYS {
            if let Some(inner) = v.get(key) {
                if dict_has_tensors(inner) {
                    return inner.as_dict();
                }
                if depth > 0 {
                    if let Some(found) = search(inner, depth - 1) {
                        return Some(found);
                    }
                }
            }
        }
        if dict_has_tensors(v) {
            return v.as_dict();
        }
        None
    }
    if let Some(found) = search(root, 1) {
        return Ok(found);
    }
    let what = match root.as_dict() {
        Some(entries) => {
            let keys: Vec<String> = entries
                .iter()
                .take(12)
                .map(|(k, _)| match k {
                    Value::Str(s) => format!("{s:?}"),
                    other => other.type_name().to_owned(),
                })
                .collect();
            format!(
                "the top-level dict has no tensors and no state dict under {} (its keys: {})",
                WRAPPER_KEYS.join("/"),
                keys.join(", ")
            )
        }
        None => format!("the top-level object is a {}, not a dict", root.type_name()),
    };
    Err(CheckpointError::NoTensors(what))
}

/// Extracts the state dict's tensors from a checkpoint's main pickle.
pub(crate) fn tensors_from_pickle(
    root: &Value,
    source: &mut dyn StorageSource,
    budget: &mut Budget,
) -> Result<Vec<(String, RawTensor)>, CheckpointError> {
    let entries = find_state_dict(root)?;
    let mut out: Vec<(String, RawTensor)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (k, v) in entries {
        // Non-string keys never name parameters.
        let Value::Str(key) = k else { continue };
        let Some(spec) = tensor_spec(v) else { continue };
        let spec = spec.map_err(|what| CheckpointError::bad_tensor(key, what))?;
        let tensor = materialize(key, &spec, source, budget)?;
        // A key set twice in the pickle: the later value wins, in the first position.
        match index.get(key).and_then(|&i| out.get_mut(i)) {
            Some(slot) => slot.1 = tensor,
            None => {
                index.insert(key.clone(), out.len());
                out.push((key.clone(), tensor));
            }
        }
    }
    Ok(out)
}

/// Removes the `module.` prefix `DataParallel` adds, if every key has it.
fn strip_module_prefix(tensors: &mut [(String, RawTensor)]) {
    const PREFIX: &str = "module.";
    if !tensors.is_empty() && tensors.iter().all(|(k, _)| k.starts_with(PREFIX)) {
        for (k, _) in tensors.iter_mut() {
            k.drain(..PREFIX.len());
        }
    }
}

fn materialize(
    key: &str,
    spec: &TensorSpec,
    source: &mut dyn StorageSource,
    budget: &mut Budget,
) -> Result<RawTensor, CheckpointError> {
    let sref = match storage_ref(&spec.storage) {
        Ok(r) => r,
        Err(StorageRefError::Unsupported(dtype)) => {
            return Err(CheckpointError::UnsupportedDtype { key: key.to_owned(), dtype })
        }
        Err(StorageRefError::Invalid(what)) => return Err(CheckpointError::bad_tensor(key, what)),
    };
    let numel = spec
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| CheckpointError::bad_tensor(key, "shape has too many elements"))?;
    budget.take(numel)?;
    let es = sref.dtype.size();
    let (view_start, view_len) = sref.view.unwrap_or((0, sref.numel));
    let view_end = view_start
        .checked_add(view_len)
        .filter(|&e| e <= sref.numel)
        .ok_or_else(|| CheckpointError::bad_tensor(key, "storage view exceeds its storage"))?;
    let min_bytes = sref
        .numel
        .checked_mul(es)
        .ok_or_else(|| CheckpointError::bad_tensor(key, "storage size overflows"))?;
    let big_endian = source.big_endian();
    let bytes = source.storage(key, &sref.key, min_bytes)?;
    let view = bytes
        .get(view_start * es..view_end * es)
        .ok_or_else(|| CheckpointError::bad_tensor(key, "storage is shorter than declared"))?;
    let data = gather(view, sref.dtype, big_endian, spec.offset, &spec.shape, &spec.stride)
        .map_err(|what| CheckpointError::bad_tensor(key, what))?;
    Ok(RawTensor { shape: spec.shape.clone(), data })
}

/// Copies a strided view out of a storage into C order, checking that every
/// element lies inside the storage.
pub(crate) fn gather(
    storage: &[u8],
    dtype: Dtype,
    big_endian: bool,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
) -> Result<Vec<f32>, String> {
    let es = dtype.size();
    let storage_numel = storage.len() / es;
    if shape.len() != stride.len() {
        return Err("size and stride have different lengths".into());
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("shape has too many elements")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Every dimension is at least 1 here, so the last element is the furthest.
    let mut last = offset;
    for (&d, &s) in shape.iter().zip(stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| last.checked_add(x))
            .ok_or("view offset overflows")?;
    }
    if last >= storage_numel {
        return Err(format!(
            "view reaches element {last} but its storage has {storage_numel} elements"
        ));
    }
    let mut out = Vec::with_capacity(numel);
    let mut expected = 1usize;
    let mut contiguous = true;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            contiguous = false;
            break;
        }
        expected = expected.saturating_mul(d);
    }
    if contiguous {
        let bytes =
            storage.get(offset * es..(offset + numel) * es).ok_or("view exceeds its storage")?;
        dtype.extend_f32(bytes, big_endian, &mut out);
        return Ok(out);
    }
    let mut idx = vec![0usize; shape.len()];
    let mut pos = offset;
    for _ in 0..numel {
        let elem = storage.get(pos * es..pos * es + es).ok_or("view exceeds its storage")?;
        out.push(dtype.to_f32(elem, big_endian));
        // Odometer step; wrapping arithmetic is exact modulo 2^64 and only
        // in-bounds positions are ever read.
        for ((i, &d), &s) in idx.iter_mut().zip(shape).zip(stride).rev() {
            *i += 1;
            pos = pos.wrapping_add(s);
            if *i < d {
                break;
            }
            pos = pos.wrapping_sub(s.wrapping_mul(d));
            *i = 0;
        }
    }
    Ok(out)
}

/// Collects every storage reference in a pickle (legacy files need their
/// element sizes to find the storage boundaries).
pub(crate) fn collect_storage_refs(v: &Value, out: &mut Vec<StorageRef>) {
    match v {
        Value::PersistentId(_) => {
            if let Ok(r) = storage_ref(v) {
                out.push(r);
            }
        }
        Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
            items.iter().for_each(|x| collect_storage_refs(x, out))
        }
        Value::Dict(entries) => entries.iter().for_each(|(k, x)| {
            collect_storage_refs(k, out);
            collect_storage_refs(x, out);
        }),
        Value::Call { args, .. } => args.iter().for_each(|x| collect_storage_refs(x, out)),
        Value::Object { args, state, .. } => {
            args.iter().for_each(|x| collect_storage_refs(x, out));
            if let Some(s) = state {
                collect_storage_refs(s, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn gather_contiguous_and_offset() {
        let s = f32_bytes(&[0., 1., 2., 3., 4., 5., 6.]);
        assert_eq!(
            gather(&s, Dtype::F32, false, 1, &[2, 3], &[3, 1]).unwrap(),
            vec![1., 2., 3., 4., 5., 6.]
        );
        assert_eq!(gather(&s, Dtype::F32, false, 4, &[], &[]).unwrap(), vec![4.]);
        assert!(gather(&s, Dtype::F32, false, 2, &[2, 3], &[3, 1]).is_err());
    }

    #[test]
    fn gather_transposed_and_broadcast() {
        let s = f32_bytes(&[0., 1., 2., 3., 4., 5.]);
        // The transpose of a 2x3 matrix: shape 3x2, stride (1, 3).
        assert_eq!(
            gather(&s, Dtype::F32, false, 0, &[3, 2], &[1, 3]).unwrap(),
            vec![0., 3., 1., 4., 2., 5.]
        );
        // Zero stride broadcast and a step-2 slice.
        assert_eq!(
            gather(&s, Dtype::F32, false, 1, &[2, 3], &[0, 2]).unwrap(),
            vec![1., 3., 5., 1., 3., 5.]
        );
        // Out of bounds by one element.
        assert!(gather(&s, Dtype::F32, false, 0, &[3, 3], &[1, 2]).is_err());
        // Empty tensors need no storage at all.
        assert_eq!(
            gather(&[], Dtype::F32, false, 99, &[0, 3], &[3, 1]).unwrap(),
            Vec::<f32>::new()
        );
        // Huge stride on a size-1 dim is fine.
        assert_eq!(
            gather(&s, Dtype::F32, false, 0, &[1, 2], &[usize::MAX, 5]).unwrap(),
            vec![0., 5.]
        );
        assert!(gather(&s, Dtype::F32, false, 0, &[2, 2], &[usize::MAX, 1]).is_err());
    }

    #[test]
    fn module_prefix_stripped_only_when_common() {
        let t = || RawTensor { shape: vec![], data: vec![0.] };
        let mut all = vec![("module.a".to_string(), t()), ("module.b".to_string(), t())];
        strip_module_prefix(&mut all);
        assert_eq!(all[0].0, "a");
        let mut mixed = vec![("module.a".to_string(), t()), ("b".to_string(), t())];
        strip_module_prefix(&mut mixed);
        assert_eq!(mixed[0].0, "module.a");
    }

    #[test]
    fn unknown_bytes_are_unknown_format() {
        assert!(matches!(
            read_checkpoint_bytes(b"hello world"),
            Err(CheckpointError::UnknownFormat)
        ));
        assert!(matches!(read_checkpoint_bytes(b""), Err(CheckpointError::UnknownFormat)));
    }

    #[test]
    fn read_checkpoint_names_the_path() {
        let err = read_checkpoint(Path::new("/nonexistent/dir/x.pth")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/dir/x.pth"), "{err}");
    }
}

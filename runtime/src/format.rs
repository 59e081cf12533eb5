//! The shortcut model file: safetensors whose `__metadata__` carries the architecture.
//!
//! `__metadata__` holds `"format": "shortcut/1"`, `"arch"` (a display name) and `"network"`,
//! the JSON of [`ModelSpec`]. Tensors are f32, named as [`shortcut_core::spec::ParamInfo`]
//! prints them (`stem.conv.weight`, `blocks.3.conv1.bias`, `head.fc.weight`, ...), with BN
//! already folded into the convs.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use shortcut_core::{BlockSpec, HeadSpec, NetworkSpec, StemSpec};

/// The value of `"format"` this version reads and writes.
pub const FORMAT_VERSION: &str = "shortcut/1";

/// An owned network description, as stored in the model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub in_channels: usize,
    pub stem: StemSpec,
    pub blocks: Vec<BlockSpec>,
    pub head: HeadSpec,
}

impl ModelSpec {
    /// The borrowed view the core interprets.
    pub fn view(&self) -> NetworkSpec<'_> {
        NetworkSpec {
            in_channels: self.in_channels,
            stem: self.stem,
            blocks: &self.blocks,
            head: self.head,
        }
    }
}

/// Why a model file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: cannot serialise: {reason}")]
    Serialize { path: String, reason: String },
    #[error("tensor `{name}` has {found} elements, its shape needs {expected}")]
    Shape { name: String, expected: usize, found: usize },
}

/// One tensor to store.
pub struct NamedTensor<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// Writes a model file atomically: a temporary file in the same directory, renamed over `path`
/// only once complete, so a failure never leaves a partial or clobbered output.
pub fn save_model(
    path: &Path,
    arch: &str,
    spec: &ModelSpec,
    tensors: &[NamedTensor<'_>],
) -> Result<(), SaveError> {
    let shown = path.display().to_string();
    for t in tensors {
        let expected: usize = t.shape.iter().product();
        if expected != t.data.len() {
            return Err(SaveError::Shape { name: t.name.clone(), expected, found: t.data.len() });
        }
    }
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| SaveError::Serialize { path: shown.clone(), reason: e.to_string() })
        })
        .collect::<Result<_, _>>()?;
    let network = serde_json::to_string(spec)
        .map_err(|e| SaveError::Serialize { path: shown.clone(), reason: e.to_string() })?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT_VERSION.to_string()),
        ("arch".to_string(), arch.to_string()),
        ("network".to_string(), network),
    ]);
    let data = safetensors::serialize(views, &Some(metadata))
        .map_err(|e| SaveError::Serialize { path: shown.clone(), reason: e.to_string() })?;
    write_atomically(path, &data).map_err(|error| SaveError::Io { path: shown, error })
}

/// Writes `data` to `path` through a temporary sibling and a rename.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

//! The shortcut model file: safetensors whose `__metadata__` carries the architecture.
//!
//! `__metadata__` holds `"format": "shortcut/1"`, `"arch"` (a display name), optionally
//! `"preprocess"` (JSON of [`Preprocess`]: how images are prepared for this model), and `"network"`,
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

/// How an image becomes the model's input: torchvision's standard evaluation transform
/// (resize the shorter side with antialiased bilinear filtering, center crop, scale to [0, 1],
/// normalise per channel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// Target of the shorter side before cropping.
    pub resize: usize,
    /// Side of the square center crop.
    pub crop: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Preprocess {
    /// torchvision's ImageNet evaluation transform: resize 256, crop 224, ImageNet mean/std.
    pub fn imagenet() -> Preprocess {
        Preprocess {
            resize: 256,
            crop: 224,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        }
    }

    /// Checks sizes and that mean/std have one entry per channel with non-zero std.
    pub fn validate(&self, channels: usize) -> Result<(), String> {
        if self.crop == 0 || self.resize == 0 || self.crop > self.resize {
            return Err(format!("resize {} / crop {} is not a valid pair", self.resize, self.crop));
        }
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(format!("mean and std need {channels} entries (one per input channel)"));
        }
        if self.std.iter().any(|&s| s == 0.0 || !s.is_finite())
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err("std must be finite and non-zero, mean finite".into());
        }
        Ok(())
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
    preprocess: Option<&Preprocess>,
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
    let mut metadata = HashMap::from([
        ("format".to_string(), FORMAT_VERSION.to_string()),
        ("arch".to_string(), arch.to_string()),
        ("network".to_string(), network),
    ]);
    if let Some(p) = preprocess {
        let json = serde_json::to_string(p)
            .map_err(|e| SaveError::Serialize { path: shown.clone(), reason: e.to_string() })?;
        metadata.insert("preprocess".to_string(), json);
    }
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

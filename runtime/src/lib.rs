//! `shortcut-runtime`: loads shortcut model files and runs them.
//!
//! ```no_run
//! use shortcut_runtime::{Model, Tensor};
//! let model = Model::load("resnet18.safetensors")?;
//! let input = Tensor::zeros(vec![1, 3, 224, 224]);
//! let logits = model.forward(&input)?;
//! assert_eq!(logits.shape(), &[1, 1000]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod engine;
pub mod format;
pub mod model;
pub mod profile;
pub mod team;
pub mod tensor;
pub mod zoo;

pub use engine::{OptionsError, Resolved, RunOptions};
pub use format::{save_model, ModelSpec, NamedTensor, Preprocess, SaveError, FORMAT_VERSION};
pub use model::{LoadError, Model, RunError, Session};
pub use shortcut_core as core_ops;
pub use tensor::{ShapeError, Tensor};

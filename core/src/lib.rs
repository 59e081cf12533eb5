//! `shortcut-core`: the no_std heart of the shortcut ResNet engine.
//!
//! - [`shape`]: activation shapes and the output-size arithmetic PyTorch uses.
//! - [`reference`](mod@reference): slow, obviously correct implementations of every op; the
//!   test oracle.
//! - [`spec`]: a network described as plain data (stem, residual blocks, head).
//! - [`weights`]: borrowed parameter slices matching a spec.
//! - [`plan`](mod@plan): buffer sizes for a forward pass, computed up front so no allocation
//!   is needed.
//! - [`forward`](mod@forward): the interpreter that walks a spec and calls a
//!   [`forward::Backend`] per op.
//!
//! Activations are NCHW `f32`, row-major, batch first; the fast engine may keep them
//! channel-blocked between its convolutions ([`layout`]).
#![no_std]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod aligned;
pub mod arch;
pub mod conv;
pub mod epilogue;
pub mod forward;
pub mod layout;
pub mod ops;
pub mod plan;
pub mod reference;
pub mod shape;
pub mod spec;
pub mod weights;

pub use epilogue::Epilogue;
pub use forward::{forward, Backend, ForwardError, ReferenceBackend};
#[cfg(feature = "alloc")]
pub use plan::LifetimePlan;
pub use plan::{plan, Plan};
pub use shape::{Conv2dGeometry, Shape};
pub use spec::{
    BlockKind, BlockSpec, HeadPool, HeadSpec, NetworkSpec, Shortcut, SpecError, StemSpec,
};
pub use weights::{AffineWeights, BlockWeights, ConvWeights, LinearWeights, NetworkWeights};

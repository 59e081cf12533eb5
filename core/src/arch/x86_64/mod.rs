//! x86_64 kernels. Both ISAs are always compiled; [`super::Isa::is_available`] gates their use.

pub mod avx2;
pub mod avx512;

pub mod checkpoint;
pub mod convert;
pub mod npy;
pub mod pickle;

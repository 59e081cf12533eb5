pub mod checkpoint;
pub mod classify;
pub mod cli;
pub mod convert;
pub mod npy;
pub mod pickle;
pub mod preprocess;

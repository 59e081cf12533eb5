#![no_std]
#[cfg(feature = "alloc")]
extern crate alloc;

//! `f32` storage aligned to 64 bytes.
//!
//! Large `Vec<f32>` allocations come from `mmap` with the allocator's 16-byte header in front,
//! so their elements sit 16 bytes past a cache line: every AVX-512 load of packed weights or
//! store of an activation would then straddle two lines. Packed weights, the activation arena
//! and kernel scratch live here instead.
#![cfg(feature = "alloc")]

use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// One cache line of floats. `repr(C)` with no padding (64 bytes, 16 floats of 4), so a slice of
/// lines is a contiguous run of floats.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// A growable `f32` buffer whose first element is 64-byte aligned.
#[derive(Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// `len` zeros.
    pub fn zeros(len: usize) -> AlignedVec {
        AlignedVec { lines: alloc::vec![Line([0.0; 16]); len.div_ceil(16)], len }
    }

    /// A copy of `values`.
    pub fn from_slice(values: &[f32]) -> AlignedVec {
        let mut v = AlignedVec::zeros(values.len());
        v.copy_from_slice(values);
        v
    }

    /// Grows or shrinks to `len` elements; new elements are zero.
    pub fn resize(&mut self, len: usize) {
        let old = self.len;
        self.lines.resize(len.div_ceil(16), Line([0.0; 16]));
        self.len = len;
        if len > old {
            self[old..].fill(0.0);
        }
    }
}

impl Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: `lines` holds `16 * lines.len() >= len` initialised, contiguous floats
        // (`Line` is a padding-free `repr(C)` array of floats), borrowed for `&self`.
        unsafe { core::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, borrowed exclusively for `&mut self`.
        unsafe { core::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

impl core::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "AlignedVec({} floats)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_resized_and_zeroed() {
        let mut v = AlignedVec::from_slice(&[1.0, 2.0, 3.0]);
        assert_eq!(&v[..], &[1.0, 2.0, 3.0]);
        assert_eq!(v.as_ptr() as usize % 64, 0);
        v[2] = 5.0;
        v.resize(1);
        v.resize(40);
        assert_eq!(v.len(), 40);
        assert_eq!(&v[..3], &[1.0, 0.0, 0.0]);
        assert!(v[3..].iter().all(|&x| x == 0.0));
        assert_eq!(v.as_ptr() as usize % 64, 0);
        assert!(AlignedVec::zeros(0).is_empty());
    }
}

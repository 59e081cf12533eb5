//! How activations are laid out in memory.
//!
//! The reference ops and the user's tensors are NCHW. The fast engine can instead keep every
//! activation after the stem channel-blocked, `NCHW16c`: `[n][c / 16][h][w][16]`, the layout of
//! oneDNN's `nChw16c` and ONNX Runtime's NCHWc transform. A pixel's 16 channels are then one
//! AVX-512 vector, so a convolution reads a tile of pixels for 16 channels as consecutive
//! floats and writes its pixels-by-channels tile without transposing, and pooling and
//! per-channel ops are vector operations. Blocked tensors hold exactly as many elements as NCHW
//! ones (the layout applies only to channel counts that are multiples of 16), so buffers and
//! the memory plan are the same in both layouts.

use crate::arch::blocked::BLOCK;
use crate::shape::Shape;

/// The memory layout of a 4-D activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ActLayout {
    /// `[n][c][h][w]`.
    #[default]
    Nchw,
    /// `[n][c / 16][h][w][16]`; only for channel counts that are multiples of 16.
    Nchw16c,
}

impl ActLayout {
    pub const ALL: [ActLayout; 2] = [ActLayout::Nchw, ActLayout::Nchw16c];

    pub fn name(self) -> &'static str {
        match self {
            ActLayout::Nchw => "nchw",
            ActLayout::Nchw16c => "nchw16c",
        }
    }

    pub fn from_name(s: &str) -> Option<ActLayout> {
        ActLayout::ALL.into_iter().find(|l| l.name() == s)
    }

    /// Whether a tensor of `channels` channels can be stored in this layout.
    pub fn fits(self, channels: usize) -> bool {
        match self {
            ActLayout::Nchw => true,
            ActLayout::Nchw16c => channels.is_multiple_of(BLOCK),
        }
    }

    /// Index of element `(n, c, y, x)` of a tensor of `shape` in this layout.
    #[inline]
    pub fn index(self, shape: Shape, n: usize, c: usize, y: usize, x: usize) -> usize {
        match self {
            ActLayout::Nchw => ((n * shape.c + c) * shape.h + y) * shape.w + x,
            ActLayout::Nchw16c => {
                let block = n * shape.c / BLOCK + c / BLOCK;
                ((block * shape.h + y) * shape.w + x) * BLOCK + c % BLOCK
            }
        }
    }
}

impl core::fmt::Display for ActLayout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Copies `src` (a tensor of `shape` in layout `from`) into `dst` in layout `to`.
///
/// # Panics
/// If a buffer's length is not `shape.len()` or `shape.c` does not fit either layout.
pub fn convert(src: &[f32], from: ActLayout, shape: Shape, dst: &mut [f32], to: ActLayout) {
    assert!(src.len() == shape.len() && dst.len() == shape.len(), "convert: buffer lengths");
    assert!(from.fits(shape.c) && to.fits(shape.c), "convert: channels do not fit the layout");
    for n in 0..shape.n {
        for c in 0..shape.c {
            for y in 0..shape.h {
                for x in 0..shape.w {
                    dst[to.index(shape, n, c, y, x)] = src[from.index(shape, n, c, y, x)];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_index_is_a_permutation_and_round_trips() {
        let shape = Shape::new(2, 32, 3, 5);
        let src: [f32; 960] = core::array::from_fn(|i| i as f32);
        let mut blocked = [0.0; 960];
        let mut back = [0.0; 960];
        convert(&src, ActLayout::Nchw, shape, &mut blocked, ActLayout::Nchw16c);
        convert(&blocked, ActLayout::Nchw16c, shape, &mut back, ActLayout::Nchw);
        assert_eq!(src, back);
        // Channel 17 of image 1 at (2, 4): block 1 of image 1, lane 1.
        let at = ((((2 + 1) * 3 + 2) * 5) + 4) * 16 + 1;
        assert_eq!(blocked[at], src[((32 + 17) * 3 + 2) * 5 + 4]);
        assert!(!ActLayout::Nchw16c.fits(24) && ActLayout::Nchw16c.fits(48));
    }
}

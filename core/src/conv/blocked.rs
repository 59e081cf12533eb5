//! Operands of [`ConvAlgo::GemmT`](super::ConvAlgo::GemmT) over channel-blocked input
//! (`NCHW16c`, [`crate::layout`]): the weights in the reduction order that layout reads, the
//! padded copy of input rows kxk windows are read from, and the packed last tile of a pointwise
//! layer whose pixels do not fill whole tiles.
//!
//! The reduction runs over kernel taps, then input channel blocks, then the 16 channels of a
//! block: step `((ky * kw + kx) * cin + ci)`. Each group of 16 steps (one tap of one channel
//! block) reads `MR` pixels x 16 channels, consecutive floats of the blocked input, at one
//! offset per group (`Kernels::gemm_b`).

use alloc::vec::Vec;

use crate::arch::blocked::BLOCK;
use crate::shape::{Conv2dGeometry, Shape};

/// The weights `[out][in/groups][kh][kw]` reordered to `[out][kh][kw][in/groups]`, the order of
/// the blocked reduction; `gemm::pack_weights` then packs them as any GEMM's.
pub(super) fn reorder_weights(geom: &Conv2dGeometry, weight: &[f32]) -> Vec<f32> {
    let (cin, taps) = (geom.in_per_group(), geom.kernel_h * geom.kernel_w);
    let mut w = alloc::vec![0.0; weight.len()];
    for (dst, src) in w.chunks_exact_mut(cin * taps).zip(weight.chunks_exact(cin * taps)) {
        for ci in 0..cin {
            for t in 0..taps {
                dst[t * cin + ci] = src[ci * taps + t];
            }
        }
    }
    w
}

/// Columns per phase of the padded copy: a whole row of tiles (`row_tiles` pixels, a multiple
/// of `MR`) plus the columns the widest tap reaches past it.
pub(super) fn phase_width(geom: &Conv2dGeometry, row_tiles: usize) -> usize {
    row_tiles + (geom.kernel_w - 1) / geom.stride_w
}

/// Fills `buf` with the zero-padded, phase-split input rows that output rows from `first` on
/// read, blocked: `[in/16][row][phase][phase_w][16]`, where padded row `r` holds input row
/// `first * sh + r - pad_h` and element `j` of phase `q` input column `j * sw + q - pad_w`.
/// `img` is the group's `in/groups` channels of one image in `NCHW16c`.
pub(super) fn padded_rows(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    first: usize,
    phase_w: usize,
    buf: &mut [f32],
) {
    let (ih, iw) = (in_shape.h, in_shape.w);
    let (sh, sw) = (geom.stride_h, geom.stride_w);
    let plane_in = ih * iw * BLOCK;
    let row_len = sw * phase_w * BLOCK;
    let blocks = geom.in_per_group() / BLOCK;
    let plane = buf.len() / blocks;
    for (cb, dst) in buf.chunks_exact_mut(plane).enumerate() {
        let src = &img[cb * plane_in..][..plane_in];
        for (r, row) in dst.chunks_exact_mut(row_len).enumerate() {
            let Some(y) = (first * sh + r).checked_sub(geom.pad_h).filter(|&y| y < ih) else {
                row.fill(0.0);
                continue;
            };
            let line = &src[y * iw * BLOCK..][..iw * BLOCK];
            for (q, phase) in row.chunks_exact_mut(phase_w * BLOCK).enumerate() {
                for (j, px) in phase.chunks_exact_mut(BLOCK).enumerate() {
                    match (j * sw + q).checked_sub(geom.pad_w).filter(|&x| x < iw) {
                        Some(x) => px.copy_from_slice(&line[x * BLOCK..][..BLOCK]),
                        None => px.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Packs pixels `p0 .. p0 + n` (`n <= mr`) of the group's blocked input into one tile of `mr`
/// rows per channel block (`[in/16][mr][16]`, rows past `n` zero), for the last tile of a
/// pointwise layer, which would otherwise read past the input.
pub(super) fn pack_tile(
    img: &[f32],
    plane: usize,
    p0: usize,
    n: usize,
    mr: usize,
    dst: &mut [f32],
) {
    for (cb, tile) in dst.chunks_exact_mut(mr * BLOCK).enumerate() {
        let src = &img[(cb * plane + p0) * BLOCK..][..n * BLOCK];
        tile[..n * BLOCK].copy_from_slice(src);
        tile[n * BLOCK..].fill(0.0);
    }
}

/// Copies the input pixels that output pixels `p0 .. p0 + n` of a `1x1` convolution without
/// padding read (`(oy * sh, ox * sw)` for output `(oy, ox)`, `out_w` output columns) into
/// `dst`, `[in/16][dst.len() / in][16]`, zero past `n`: a strided layer's operand as a pointwise
/// layer's, holding only the pixels it uses.
pub(super) fn subsample(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    out_w: usize,
    p0: usize,
    n: usize,
    dst: &mut [f32],
) {
    let plane_in = in_shape.h * in_shape.w * BLOCK;
    let pixels = dst.len() / geom.in_per_group();
    for (cb, tile) in dst.chunks_exact_mut(pixels * BLOCK).enumerate() {
        let src = &img[cb * plane_in..][..plane_in];
        for (i, px) in tile.chunks_exact_mut(BLOCK).enumerate() {
            if i < n {
                let (oy, ox) = ((p0 + i) / out_w, (p0 + i) % out_w);
                let at = (oy * geom.stride_h * in_shape.w + ox * geom.stride_w) * BLOCK;
                px.copy_from_slice(&src[at..][..BLOCK]);
            } else {
                px.fill(0.0);
            }
        }
    }
}

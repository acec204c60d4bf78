//! Direct convolution. The fast path is the network stem: 3 input channels, 3x3
//! kernel, stride 2, any output channel count (12, 16, 24, 48...) and any padding
//! the parameters allow. Per output row, the 9 input rows it reads (3 channels x 3
//! kernel rows) are copied once into zero-padded row buffers (a few instructions
//! per input float, against 24 x 27 multiply-adds per output pixel); then per tile
//! of 12 output pixels an im2col tile of K = 27 rows is built with `ld2` (even/odd
//! columns) and multiplied by the 8-row weight panels with the pointwise GEMM's
//! 8x12 register tile (bias and ReLU in its epilogue). Output columns are processed
//! in chunks of [`CHUNK`] so the row buffers stay on the stack.
//!
//! Every other convolution shape (other channel counts, groups, kernel sizes or
//! strides) runs the scalar twin.

use super::pointwise_gemm_8x12::{fill_bias_table, tile_dyn, TileMode, BIAS_TAB, NR};
use crate::{Conv2d, KernelError, PlaneGeom, MR};
use core::arch::aarch64::*;
use std::ops::Range;

/// K of the stem GEMM: 3 channels x 3 x 3 taps.
const K: usize = 27;
/// Output columns per chunk.
const CHUNK: usize = 256;
/// Floats of a padded row buffer: the chunk's `2 * CHUNK` input columns, rounded
/// up to whole tiles, plus the reads past the last tile's window.
const ROW: usize = 2 * CHUNK + 2 * NR + 8;
/// Output channels (panels of `MR`) whose packed weights are built at once.
const BLOCK_PANELS: usize = 8;

/// Computes output channels `out_channels` (contract of the scalar twin).
pub fn conv2d(
    p: &Conv2d,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    out_channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &out_channels)?;
    let stem =
        p.cin == 3 && p.groups == 1 && p.kh == 3 && p.kw == 3 && p.stride_h == 2 && p.stride_w == 2;
    if !stem {
        return crate::scalar::conv2d::conv2d(p, g, input, output, out_channels);
    }
    if g.out_h == 0 || g.out_w == 0 || out_channels.is_empty() {
        return Ok(());
    }
    let mut wpack = [0f32; BLOCK_PANELS * K * MR];
    let mut bias_tab = [0f32; BLOCK_PANELS * BIAS_TAB];
    let mut rows = [[0f32; ROW]; 9];
    let mut col = [0f32; K * NR];
    let mut c0 = out_channels.start;
    while c0 < out_channels.end {
        let c1 = out_channels.end.min(c0 + BLOCK_PANELS * MR);
        let panels = (c1 - c0).div_ceil(MR);
        wpack[..panels * K * MR].fill(0.0);
        for j in 0..panels {
            let rows_j = MR.min(c1 - c0 - j * MR);
            for r in 0..rows_j {
                let oc = c0 + j * MR + r;
                for k in 0..K {
                    wpack[(j * K + k) * MR + r] = p.weights[oc * K + k];
                }
            }
            // SAFETY: panel j < BLOCK_PANELS has its BIAS_TAB floats.
            unsafe {
                fill_bias_table(
                    bias_tab.as_mut_ptr().add(j * BIAS_TAB),
                    |r| p.bias[c0 + j * MR + r],
                    rows_j,
                );
            }
        }
        for y in 0..g.out_h {
            let mut cx = 0;
            while cx < g.out_w {
                let cw = CHUNK.min(g.out_w - cx);
                // Padded copies of the 9 input rows: buffer column c is input
                // column 2 cx - pad_left + c, zero outside the input.
                let first = (2 * cx) as isize - g.pad_left as isize;
                // Columns the tiles read: see `im2col`.
                let need = (2 * cw.next_multiple_of(4) + 10).min(ROW);
                for (i, buf) in rows.iter_mut().enumerate() {
                    let (ci, ky) = (i / 3, i % 3);
                    let iy = (2 * y + ky) as isize - g.pad_top as isize;
                    let lo = first.max(0) as usize;
                    let hi = (first + need as isize).clamp(0, g.in_w as isize) as usize;
                    if iy < 0 || iy >= g.in_h as isize || lo >= hi {
                        buf[..need].fill(0.0);
                        continue;
                    }
                    let src = ci * g.in_stride + iy as usize * g.in_w;
                    let at = (lo as isize - first) as usize;
                    buf[..at].fill(0.0);
                    buf[at..at + hi - lo].copy_from_slice(&input[src + lo..src + hi]);
                    buf[at + hi - lo..need].fill(0.0);
                }
                let mut x = 0;
                while x < cw {
                    let n = NR.min(cw - x);
                    let nv = n.div_ceil(4);
                    let lanes = n - 4 * (nv - 1);
                    // SAFETY: the im2col reads buffer columns 2x .. 2x + 8 nv + 2 <=
                    // 2 cw.next_multiple_of(4) + 10 = need <= ROW (the last tile
                    // ends at the chunk's last vector), all written above, and
                    // writes K rows of 4 nv floats.
                    unsafe { im2col(&rows, 2 * x, nv, col.as_mut_ptr()) };
                    for j in 0..panels {
                        let rows_j = MR.min(c1 - c0 - j * MR);
                        let plane = c0 + j * MR - out_channels.start;
                        let mode = TileMode {
                            first: true,
                            accumulate: false,
                            relu: p.relu,
                        };
                        // SAFETY: `check` proved the output holds planes
                        // `0 .. out_channels.len()` of `out_h * out_w` floats at
                        // `plane * out_stride`; this tile writes rows
                        // `plane .. plane + rows_j` at pixels `y * out_w + cx + x ..
                        // + n`, inside the row. The packed weights hold K x MR floats
                        // per panel and `col` K rows of 4 nv floats.
                        unsafe {
                            tile_dyn(
                                nv,
                                K,
                                col.as_ptr(),
                                wpack.as_ptr().add(j * K * MR),
                                bias_tab.as_ptr().add(j * BIAS_TAB),
                                output
                                    .as_mut_ptr()
                                    .add(plane * g.out_stride + y * g.out_w + cx + x),
                                g.out_stride,
                                rows_j,
                                lanes,
                                mode,
                            );
                        }
                    }
                    x += n;
                }
                cx += cw;
            }
        }
        c0 = c1;
    }
    Ok(())
}

/// Builds the im2col tile of `4 * nv` output pixels starting at buffer column
/// `c`: K row `ci * 9 + ky * 3 + kx` holds, for pixel `t`, buffer `3 ci + ky` at
/// column `c + 2 t + kx`.
///
/// # Safety
/// Columns `c .. c + 8 nv + 2` of every buffer are readable (they are: see the
/// caller); `col` holds `K * 4 * nv` writable floats.
#[inline(always)]
unsafe fn im2col(rows: &[[f32; ROW]; 9], c: usize, nv: usize, col: *mut f32) {
    let w = 4 * nv;
    for (i, buf) in rows.iter().enumerate() {
        for j in 0..nv {
            // SAFETY: reads buffer columns c + 8j .. c + 8j + 10 < ROW; writes
            // K rows `3i .. 3i + 3` at columns 4j .. 4j + 4 of the tile.
            unsafe {
                let p = buf.as_ptr().add(c + 8 * j);
                let a = vld2q_f32(p);
                let b = vld2q_f32(p.add(2));
                let d = col.add(3 * i * w + 4 * j);
                vst1q_f32(d, a.0);
                vst1q_f32(d.add(w), a.1);
                vst1q_f32(d.add(2 * w), b.0);
            }
        }
    }
}

//! The stem convolution (3 input channels, 3x3, stride 2) for output channel
//! counts that are multiples of 12 (12, 24, 48): an inline-assembly register tile
//! of 12 output channels x 8 output pixels, 24 accumulators. Per padded input row
//! (see [`fill_rows`]) it loads the 8 pixels' taps with four `ld2` (kx = 0 and 1
//! from the window start, kx = 2 two columns on) and the 12 channels' weights of
//! each tap with one three-register `ld1`, and issues 72 lane FMAs: 79
//! instructions per row (the loads post-index the cursors on to the next row),
//! and no second pass over the inputs for a 4-channel remainder (12 = 8 + 4 took
//! two). The nine rows are unrolled; per tile the bias table's last load and the
//! last row's store step their cursors back to the table and on to the next tile.
//!
//! Where a row's windows lie inside the input (every output row but those with
//! padding above or below), the tiles from column 8 on read the input rows in
//! place, stepping from row to row with two pitches (within a channel, to the
//! next channel); only the first tile (the left padding) and any tile at the
//! input's very end go through row buffers, the first one filled with
//! [`LEFT`] floats per row. Copying whole rows into buffers took 9% of the 0.5x
//! stem's instructions (kernel_icount, 224x224: 1.409M -> 1.290M per call; 2x
//! 5.182M -> 5.008M). The post-indexed cursors and the unrolled rows took it to
//! 1.244M (2x 4.828M).

use super::common::{fmax_pair, st1_pair};
use super::conv3x3s2_stem::{fill_rows, via_stack_tile, CHUNK, K, ROW};
use crate::{Conv2d, PlaneGeom};
use core::arch::asm;
use std::ops::Range;

/// Output channels per tile.
pub(super) const ROWS: usize = 12;
/// Output pixels per tile.
const NP: usize = 8;
/// Panels (of [`ROWS`] channels) whose weights are packed at once.
const BLOCK: usize = 4;

/// Computes output channels `out_channels`, a non-empty multiple of [`ROWS`]
/// (contract of the scalar twin, `check` already passed, stem shape).
pub(super) fn conv2d(
    p: &Conv2d,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    out_channels: Range<usize>,
) {
    // Per panel: K steps of 12 weights, then 12 rows of 8 bias copies.
    let mut wpack = [0f32; BLOCK * K * ROWS];
    let mut bias_tab = [0f32; BLOCK * ROWS * NP];
    let mut rows = [[0f32; ROW]; 9];
    let mut c0 = out_channels.start;
    while c0 < out_channels.end {
        let panels = ((out_channels.end - c0) / ROWS).min(BLOCK);
        for j in 0..panels {
            for r in 0..ROWS {
                let oc = c0 + j * ROWS + r;
                for k in 0..K {
                    wpack[(j * K + k) * ROWS + r] = p.weights[oc * K + k];
                }
                bias_tab[(j * ROWS + r) * NP..][..NP].fill(p.bias[oc]);
            }
        }
        let part = Part {
            g,
            out_off: c0 - out_channels.start,
            panels,
            wpack: &wpack,
            bias_tab: &bias_tab,
            relu: p.relu,
        };
        for y in 0..g.out_h {
            match direct_span(g, y, input.len()) {
                Some(hi) => {
                    part.left(&mut rows, input, output, y);
                    part.direct(input, output, y, NP..hi);
                    part.buffered(&mut rows, input, output, y, hi..g.out_w);
                }
                None => part.buffered(&mut rows, input, output, y, 0..g.out_w),
            }
        }
        c0 += panels * ROWS;
    }
}

/// Input floats the first tile of a row reads from each window row (columns 0 ..
/// 18 - pad_left), rounded up to whole vectors.
const LEFT: usize = 20;

/// For an output row `y` whose window rows all lie inside the input: the end `hi`
/// of the output columns `8 .. hi` whose tiles read the input rows in place (whole
/// tiles, every column they use inside the row, every float they load inside the
/// input); columns `0 .. 8` then take the left padding through [`fill_left`].
/// `None` for a row with padding above or below, or a narrow image.
fn direct_span(g: &PlaneGeom, y: usize, input_len: usize) -> Option<usize> {
    // Window rows 2y - pad_top .. + 3. A tile at x uses input columns 2x -
    // pad_left .. + 17 and loads one more (the odd half of its last `ld2`).
    let top = (2 * y).checked_sub(g.pad_top)?;
    if top + 3 > g.in_h || g.in_w < LEFT || g.out_w < NP {
        return None;
    }
    let by_cols = (g.in_w + g.pad_left)
        .checked_sub(2 * NP + 17)
        .map_or(0, |c| c / 16 + 1);
    let by_out = (g.out_w - NP) / NP;
    let mut n = by_cols.min(by_out);
    // The last float loaded by tile n - 1, in plane 2's last window row.
    let end = |n: usize| 2 * g.in_stride + (top + 2) * g.in_w + 2 * (NP * n) - g.pad_left + 18;
    if n > 0 && end(n) > input_len {
        n -= 1;
    }
    Some(NP + NP * n)
}

/// Fills the row buffers of the first tile of output row `y` (window rows inside
/// the input): `pad_left` zeros, then the first [`LEFT`] floats of each window row.
fn fill_left(rows: &mut [[f32; ROW]; 9], input: &[f32], g: &PlaneGeom, y: usize) {
    let pl = g.pad_left;
    for (i, buf) in rows.iter_mut().enumerate() {
        let (ci, ky) = (i / 3, i % 3);
        let at = ci * g.in_stride + (2 * y + ky - g.pad_top) * g.in_w;
        // The 3-wide window's padding is at most 2 columns (`check`): zeroing two
        // (the copy below overwrites any past `pl`) is two stores, where
        // `buf[..pl]` was a `memset` call per row buffer, 9 per output row.
        buf[..2].fill(0.0);
        if let Some(src) = input.get(at..at + LEFT) {
            buf[pl..pl + LEFT].copy_from_slice(src);
        }
    }
}

/// The output rows of one block of panels, computed part by part.
struct Part<'a> {
    g: &'a PlaneGeom,
    /// Output plane of the block's first channel.
    out_off: usize,
    /// Panels of the block.
    panels: usize,
    /// The block's packed weights.
    wpack: &'a [f32],
    /// The block's bias tables.
    bias_tab: &'a [f32],
    /// Clamp at zero.
    relu: bool,
}

impl Part<'_> {
    /// The strip call of panel `j` over `nt` tiles reading from `src` with the
    /// row pitches `(rky, rci)` (see [`Tiles`]).
    fn tiles(&self, j: usize, nt: usize, src: *const f32, (rky, rci): (usize, usize)) -> Tiles {
        Tiles {
            nt,
            src,
            rky,
            rci,
            w: self.wpack[j * K * ROWS..].as_ptr(),
            bias: self.bias_tab[j * ROWS * NP..].as_ptr(),
            out: core::ptr::null_mut(),
            os: 4 * self.g.out_stride,
            relu: self.relu,
        }
    }

    /// Output columns `xs` of row `y` through the padded row buffers, in chunks of
    /// [`CHUNK`] columns.
    fn buffered(
        &self,
        rows: &mut [[f32; ROW]; 9],
        input: &[f32],
        output: &mut [f32],
        y: usize,
        xs: Range<usize>,
    ) {
        let g = self.g;
        let pitch = (4 * ROW - 32, 4 * ROW - 32);
        let mut cx = xs.start;
        while cx < xs.end {
            let cw = CHUNK.min(xs.end - cx);
            fill_rows(rows, input, g, y, cx, 2 * cw.next_multiple_of(NP) + 2);
            let (full, rest) = (cw / NP, cw % NP);
            for j in 0..self.panels {
                let plane = self.out_off + j * ROWS;
                let o = plane * g.out_stride + y * g.out_w + cx;
                let mut a = self.tiles(j, full, rows[0].as_ptr(), pitch);
                if full > 0 {
                    // SAFETY: `check` proved the output holds planes `0 ..
                    // out_channels.len()` of `out_h * out_w` floats at `plane
                    // * out_stride`; the strip writes rows `plane .. plane +
                    // 12` at pixels `y * out_w + cx .. + 8 full <= cw`,
                    // inside the row (cx + cw <= out_w). It reads buffer
                    // columns below 16 full + 2 <= need <= ROW; the weights
                    // and bias table hold panel j.
                    unsafe {
                        a.out = output.as_mut_ptr().add(o);
                        strip(&a);
                    }
                }
                if rest > 0 {
                    let x = full * NP;
                    a.nt = 1;
                    a.os = 4 * NP;
                    let at = (o + x, g.out_stride);
                    via_stack_tile(output, at, (ROWS, rest, NP), |t| {
                        // SAFETY: as above, one tile at column x: buffer
                        // columns below 2 (x + 8) + 2 <= need; it writes `t`,
                        // 12 rows of 8 floats (96).
                        unsafe {
                            a.src = rows[0].as_ptr().add(2 * x);
                            a.out = t;
                            strip(&a);
                        }
                    });
                }
            }
            cx += cw;
        }
    }

    /// Output columns `0 .. 8` of row `y` (from [`direct_span`]): one tile over
    /// the buffers of [`fill_left`].
    fn left(&self, rows: &mut [[f32; ROW]; 9], input: &[f32], output: &mut [f32], y: usize) {
        let g = self.g;
        fill_left(rows, input, g, y);
        for j in 0..self.panels {
            let plane = self.out_off + j * ROWS;
            let o = plane * g.out_stride + y * g.out_w;
            // SAFETY: as in `buffered`, one tile at column 0 (out_w >= 8, from
            // `direct_span`); it reads buffer columns 0 .. 18 <= pad_left + LEFT,
            // all written by `fill_left`.
            unsafe {
                let mut a = self.tiles(j, 1, rows[0].as_ptr(), (4 * ROW - 32, 4 * ROW - 32));
                a.out = output.as_mut_ptr().add(o);
                strip(&a);
            }
        }
    }

    /// Output columns `xs` of row `y` (whole tiles, from [`direct_span`]) reading
    /// the input rows in place: no copy into the row buffers.
    fn direct(&self, input: &[f32], output: &mut [f32], y: usize, xs: Range<usize>) {
        let g = self.g;
        if xs.is_empty() {
            return;
        }
        // Window row (ci, ky) is input row 2y - pad_top + ky of plane ci.
        let first = (2 * y - g.pad_top) * g.in_w + 2 * xs.start - g.pad_left;
        let pitch = (4 * g.in_w - 32, 4 * (g.in_stride - 2 * g.in_w) - 32);
        for j in 0..self.panels {
            let plane = self.out_off + j * ROWS;
            let o = plane * g.out_stride + y * g.out_w + xs.start;
            // SAFETY: `check` proved the input holds 3 planes of `in_h * in_w`
            // floats at `ci * in_stride` (so `in_stride >= 3 in_w`: three rows
            // are inside the plane here) and the output as in `buffered`;
            // `direct_span` keeps every tile's rows (2y - pad_top .. + 3) inside
            // the planes, the columns it uses (2x - pad_left .. + 17) inside the
            // row, the one more it loads inside the input, and its 8 output
            // columns inside the output row.
            unsafe {
                let mut a = self.tiles(j, xs.len() / NP, input.as_ptr().add(first), pitch);
                a.out = output.as_mut_ptr().add(o);
                strip(&a);
            }
        }
    }
}

/// One strip call: `nt` tiles side by side along an output row.
struct Tiles {
    /// Tiles (at least 1).
    nt: usize,
    /// Column `2 x` of window row (ci, ky) = (0, 0): a padded row buffer, or the
    /// input itself.
    src: *const f32,
    /// Bytes from window row (ci, ky) to (ci, ky + 1), less the 32 that the row's
    /// loads advance.
    rky: usize,
    /// Bytes from window row (ci, 2) to (ci + 1, 0), less 32.
    rci: usize,
    /// The panel's packed weights: `K` steps of 12 floats.
    w: *const f32,
    /// The panel's bias table: 12 rows of 8 copies.
    bias: *const f32,
    /// Output row 0 of tile 0; tile `i` starts `8 i` floats later.
    out: *mut f32,
    /// Bytes between output rows.
    os: usize,
    /// Clamp at zero.
    relu: bool,
}

/// The 24 lane FMAs of one tap: row `r` (weights in lane `r % 4` of
/// `v4 + r / 4`) accumulates pixels `v$x` (0-3) into `v(8 + 2r)` and `v$y` (4-7)
/// into `v(9 + 2r)`.
macro_rules! tap12 {
    ($x:literal, $y:literal) => {
        concat!(
            tap12!(@4, $x, $y, 4, 8, 9, 10, 11, 12, 13, 14, 15),
            tap12!(@4, $x, $y, 5, 16, 17, 18, 19, 20, 21, 22, 23),
            tap12!(@4, $x, $y, 6, 24, 25, 26, 27, 28, 29, 30, 31),
        )
    };
    (@4, $x:literal, $y:literal, $w:literal, $a0:literal, $b0:literal, $a1:literal, $b1:literal,
     $a2:literal, $b2:literal, $a3:literal, $b3:literal) => {
        concat!(
            "fmla v", $a0, ".4s, v", $x, ".4s, v", $w, ".s[0]\n",
            "fmla v", $b0, ".4s, v", $y, ".4s, v", $w, ".s[0]\n",
            "fmla v", $a1, ".4s, v", $x, ".4s, v", $w, ".s[1]\n",
            "fmla v", $b1, ".4s, v", $y, ".4s, v", $w, ".s[1]\n",
            "fmla v", $a2, ".4s, v", $x, ".4s, v", $w, ".s[2]\n",
            "fmla v", $b2, ".4s, v", $y, ".4s, v", $w, ".s[2]\n",
            "fmla v", $a3, ".4s, v", $x, ".4s, v", $w, ".s[3]\n",
            "fmla v", $b3, ".4s, v", $y, ".4s, v", $w, ".s[3]\n",
        )
    };
}

/// `$m` applied to the register pair of each of the 12 rows.
macro_rules! pairs {
    ($m:ident) => {
        concat!(pairs11!($m), $m!(30, 31))
    };
}

/// `$m` applied to the register pair of each of the first 11 rows.
macro_rules! pairs11 {
    ($m:ident) => {
        concat!(
            $m!(8, 9),
            $m!(10, 11),
            $m!(12, 13),
            $m!(14, 15),
            $m!(16, 17),
            $m!(18, 19),
            $m!(20, 21),
            $m!(22, 23),
            $m!(24, 25),
            $m!(26, 27),
            $m!(28, 29),
        )
    };
}

/// ReLU of one row (`v7` holds zero).
macro_rules! relu_pair {
    ($a:literal, $b:literal) => {
        fmax_pair!(7, $a, $b)
    };
}

/// Store of one row at cursor `{o}`, then one output row on.
macro_rules! st_pair {
    ($a:literal, $b:literal) => {
        st1_pair!("o", "os", $a, $b)
    };
}

/// One window row at `{p}` (`{q}` = `{p}` + 8 bytes): its 8 pixels' taps kx = 0
/// and 1 (two `ld2` from the window start) and kx = 2 (two more from two columns
/// on), each times its 12 weights. Both cursors move on to the next window row by
/// post-indexing: 32 bytes, then `{$pitch}`.
macro_rules! row12 {
    ($pitch:literal) => {
        concat!(
            "ld2 {{v0.4s, v1.4s}}, [{p}], #32\n",
            "ld2 {{v2.4s, v3.4s}}, [{p}], {",
            $pitch,
            "}\n",
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{wc}], #48\n",
            tap12!(0, 2),
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{wc}], #48\n",
            tap12!(1, 3),
            "ld2 {{v0.4s, v1.4s}}, [{q}], #32\n",
            "ld2 {{v2.4s, v3.4s}}, [{q}], {",
            $pitch,
            "}\n",
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{wc}], #48\n",
            tap12!(0, 2),
        )
    };
}

/// Runs `a.nt` tiles of 12 channels x 8 pixels. K row `ci * 9 + ky * 3 + kx` of
/// pixel `t` is window row (ci, ky) at column `2 t + kx` from `a.src`; the rows
/// of a channel are `a.rky + 32` bytes apart, a channel's last and the next one's
/// first `a.rci + 32`.
///
/// # Safety
/// For every tile `i`, columns `16 i .. 16 (i + 1) + 2` of every window row (from
/// `a.src + 16 i`, with the row pitches) are readable; `a.w` holds `K * 12` floats and `a.bias`
/// 96; the 12 output rows (`a.os` bytes apart) hold `8 a.nt` writable floats
/// from `a.out`; `a.nt >= 1`.
unsafe fn strip(a: &Tiles) {
    // SAFETY: forwarded contract; the program reads the buffers, weights and bias
    // table and writes the output rows exactly as described there, and declares
    // every vector register it touches.
    unsafe {
        asm!(
            "movi v7.4s, #0",
            "mov {p}, {src}",
            "add {q}, {src}, #8",
            "20:",
            "mov {wc}, {w}",
            "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{b}], #64",
            "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{b}], #64",
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{b}], #64",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{b}], #64",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{b}], #64",
            "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{b}], {bb}",
            row12!("rky"),
            row12!("rky"),
            row12!("rci"),
            row12!("rky"),
            row12!("rky"),
            row12!("rci"),
            row12!("rky"),
            row12!("rky"),
            row12!("rci"),
            "tbz {f}, #0, 22f",
            pairs!(relu_pair),
            "22:",
            pairs11!(st_pair),
            "st1 {{v30.4s, v31.4s}}, [{o}], {ol}",
            "add {p}, {p}, {dp}",
            "add {q}, {q}, {dp}",
            "subs {nt}, {nt}, #1",
            "b.ne 20b",
            nt = inout(reg) a.nt => _,
            src = in(reg) a.src,
            w = in(reg) a.w,
            b = inout(reg) a.bias => _,
            bb = in(reg) -320isize,
            o = inout(reg) a.out => _,
            os = in(reg) a.os,
            ol = in(reg) 32isize.wrapping_sub(11 * a.os as isize),
            rky = in(reg) a.rky,
            rci = in(reg) a.rci,
            dp = in(reg) 64isize
                .wrapping_sub(6 * (a.rky as isize).wrapping_add(32))
                .wrapping_sub(3 * (a.rci as isize).wrapping_add(32)),
            f = in(reg) a.relu as u64,
            wc = out(reg) _,
            p = out(reg) _,
            q = out(reg) _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{direct_span, LEFT, NP};
    use crate::PlaneGeom;

    /// Every tile `direct_span` gives reads rows and the columns it uses inside
    /// the input planes and loads nothing past the input (here exactly three
    /// planes long), and the first tile's buffers come from inside the row; the
    /// span only shrinks at the very end of the input.
    #[test]
    fn direct_tiles_stay_inside_the_input() {
        let mut spans = 0;
        for h in 3..10 {
            for w in 16..70 {
                for pad in 0..3 {
                    for slack in [0, 1, 40] {
                        let (oh, ow) = ((h + 2 * pad - 3) / 2 + 1, (w + 2 * pad - 3) / 2 + 1);
                        let g = PlaneGeom {
                            in_h: h,
                            in_w: w,
                            in_stride: h * w + slack,
                            out_h: oh,
                            out_w: ow,
                            out_stride: oh * ow,
                            pad_top: pad,
                            pad_left: pad,
                        };
                        let len = 2 * g.in_stride + h * w;
                        for y in 0..oh {
                            let Some(hi) = direct_span(&g, y, len) else {
                                continue;
                            };
                            spans += 1;
                            let top = 2 * y - pad;
                            assert!(top + 3 <= h && w >= LEFT && hi <= ow, "{g:?} y {y}");
                            assert_eq!((hi - NP) % NP, 0);
                            for x in (NP..hi).step_by(NP) {
                                assert!(2 * x + 17 <= w + pad, "{g:?} y {y} x {x}");
                                let end = 2 * g.in_stride + (top + 2) * w + 2 * x - pad + 18;
                                assert!(end <= len, "{g:?} y {y} x {x}");
                            }
                            let roomy = direct_span(&g, y, len + 1).unwrap();
                            assert!(roomy == hi || (roomy == hi + NP && top + 3 == h));
                        }
                    }
                }
            }
        }
        assert!(spans > 1000, "{spans}");
    }
}

//! The stem convolution (3 input channels, 3x3, stride 2) for output channel
//! counts that are multiples of 12 (12, 24, 48): an inline-assembly register tile
//! of 12 output channels x 8 output pixels, 24 accumulators. Per padded input row
//! (see [`fill_rows`]) it loads the 8 pixels' taps with four `ld2` (kx = 0 and 1
//! from the window start, kx = 2 two columns on) and the 12 channels' weights of
//! each tap with one three-register `ld1`, and issues 72 lane FMAs: 83
//! instructions per row against 85 for the 8 x 12 tile, and no second pass over
//! the inputs for a 4-channel remainder (12 = 8 + 4 took two).

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
        for y in 0..g.out_h {
            let mut cx = 0;
            while cx < g.out_w {
                let cw = CHUNK.min(g.out_w - cx);
                fill_rows(&mut rows, input, g, y, cx, 2 * cw.next_multiple_of(NP) + 2);
                let (full, rest) = (cw / NP, cw % NP);
                for j in 0..panels {
                    let plane = c0 + j * ROWS - out_channels.start;
                    let o = plane * g.out_stride + y * g.out_w + cx;
                    let mut a = Tiles {
                        nt: full,
                        src: rows[0].as_ptr(),
                        w: wpack[j * K * ROWS..].as_ptr(),
                        bias: bias_tab[j * ROWS * NP..].as_ptr(),
                        out: core::ptr::null_mut(),
                        os: 4 * g.out_stride,
                        relu: p.relu,
                    };
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
        c0 += panels * ROWS;
    }
}

/// One strip call: `nt` tiles side by side along an output row.
struct Tiles {
    /// Tiles (at least 1).
    nt: usize,
    /// Column `2 x` of row buffer 0 (buffers are `ROW` floats apart).
    src: *const f32,
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
            $m!(30, 31),
        )
    };
}

/// ReLU of one row (`v7` holds zero).
macro_rules! relu_pair {
    ($a:literal, $b:literal) => {
        fmax_pair!(7, $a, $b)
    };
}

/// Store of one row at cursor `{oc}`, then one output row on.
macro_rules! st_pair {
    ($a:literal, $b:literal) => {
        st1_pair!("oc", "os", $a, $b)
    };
}

/// Runs `a.nt` tiles of 12 channels x 8 pixels. K row `ci * 9 + ky * 3 + kx` of
/// pixel `t` is buffer `3 ci + ky` at column `2 t + kx` from `a.src`.
///
/// # Safety
/// For every tile `i`, columns `16 i .. 16 (i + 1) + 2` of every row buffer (at
/// `a.src + 16 i + ROW b`) are readable; `a.w` holds `K * 12` floats and `a.bias`
/// 96; the 12 output rows (`a.os` bytes apart) hold `8 a.nt` writable floats
/// from `a.out`; `a.nt >= 1`.
unsafe fn strip(a: &Tiles) {
    // SAFETY: forwarded contract; the program reads the buffers, weights and bias
    // table and writes the output rows exactly as described there, and declares
    // every vector register it touches.
    unsafe {
        asm!(
            "20:",
            "mov {wc}, {w}",
            "mov {bc}, {b}",
            "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{bc}], #64",
            "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{bc}], #64",
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{bc}], #64",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{bc}], #64",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{bc}], #64",
            "ld1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{bc}]",
            "mov {p}, {src}",
            "mov {n}, #9",
            "21:",
            "add {q}, {p}, #8",
            "ld2 {{v0.4s, v1.4s}}, [{p}], #32",
            "ld2 {{v2.4s, v3.4s}}, [{p}]",
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{wc}], #48",
            tap12!(0, 2),
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{wc}], #48",
            tap12!(1, 3),
            "ld2 {{v0.4s, v1.4s}}, [{q}], #32",
            "ld2 {{v2.4s, v3.4s}}, [{q}]",
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{wc}], #48",
            tap12!(0, 2),
            "add {p}, {p}, {rb}",
            "subs {n}, {n}, #1",
            "b.ne 21b",
            "tbz {f}, #0, 22f",
            "movi v7.4s, #0",
            pairs!(relu_pair),
            "22:",
            "mov {oc}, {o}",
            pairs!(st_pair),
            "add {src}, {src}, #64",
            "add {o}, {o}, #32",
            "subs {nt}, {nt}, #1",
            "b.ne 20b",
            nt = inout(reg) a.nt => _,
            src = inout(reg) a.src => _,
            w = in(reg) a.w,
            b = in(reg) a.bias,
            o = inout(reg) a.out => _,
            os = in(reg) a.os,
            rb = in(reg) 4 * ROW - 32,
            f = in(reg) a.relu as u64,
            wc = out(reg) _,
            bc = out(reg) _,
            oc = out(reg) _,
            p = out(reg) _,
            q = out(reg) _,
            n = out(reg) _,
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

//! Direct convolution. The fast path is the network stem: 3 input channels, 3x3
//! kernel, stride 2, any output channel count (12, 16, 24, 48...) and any padding
//! the parameters allow. Per output row, the 9 input rows it reads (3 channels x 3
//! kernel rows) are copied once into zero-padded row buffers (a few instructions
//! per input float, against 24 x 27 multiply-adds per output pixel). Then an
//! inline-assembly register tile of 8 (or 4) output channels x 12 output pixels
//! loads its inputs straight from those buffers: per buffer, three `ld2` give taps
//! kx = 0 (even columns) and kx = 1 (odd columns) of the 12 pixels, three more from
//! two columns on give kx = 2, and each loaded vector feeds 8 (or 4) lane FMAs:
//! no im2col copy. The tile starts from a bias table and ends with the optional
//! ReLU (`fmax`, which keeps NaN). Output columns are processed in chunks of
//! [`CHUNK`] so the row buffers stay on the stack. Channel ranges that are a
//! multiple of 12 (the 0.5x, 1x and 2x stems) run the 12-channel tile of
//! [`super::conv3x3s2_stem12`] instead, which reads the rows in place away from
//! the padding.
//!
//! Every other convolution shape (other channel counts, groups, kernel sizes or
//! strides) runs the scalar twin.

use super::copy::copy_prefix;
use super::pw_tile::{fill_bias_table, BIAS_TAB};
use crate::{Conv2d, KernelError, PlaneGeom, MR};
use core::arch::asm;
use std::ops::Range;

/// K of the stem GEMM: 3 channels x 3 x 3 taps.
pub(super) const K: usize = 27;
/// Output columns per chunk.
pub(super) const CHUNK: usize = 256;
/// Output pixels per register tile.
const NP: usize = 12;
/// Floats of a padded row buffer: a tile at output column `x` reads buffer
/// columns `2x .. 2x + 2 NP + 2`, so a chunk reads `2 * CHUNK.next_multiple_of(NP)
/// + 2` columns at most.
pub(super) const ROW: usize = 2 * CHUNK + 2 * NP + 8;
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
    if out_channels
        .len()
        .is_multiple_of(super::conv3x3s2_stem12::ROWS)
    {
        super::conv3x3s2_stem12::conv2d(p, g, input, output, out_channels);
        return Ok(());
    }
    let mut wpack = [0f32; BLOCK_PANELS * K * MR];
    let mut bias_tab = [0f32; BLOCK_PANELS * BIAS_TAB];
    let mut rows = [[0f32; ROW]; 9];
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
            // SAFETY: panel j < BLOCK_PANELS has its BIAS_TAB floats; it reads
            // biases c0 + j MR .. + rows_j <= c1 <= cout, which `check` proved
            // `p.bias` holds.
            unsafe {
                fill_bias_table(
                    bias_tab.as_mut_ptr().add(j * BIAS_TAB),
                    p.bias.as_ptr().add(c0 + j * MR),
                    rows_j,
                );
            }
        }
        for y in 0..g.out_h {
            let mut cx = 0;
            while cx < g.out_w {
                let cw = CHUNK.min(g.out_w - cx);
                // Columns the tiles read: see `strip`.
                fill_rows(&mut rows, input, g, y, cx, 2 * cw.next_multiple_of(NP) + 2);
                // Tiles of NP pixels, then one of the rest (rounded up to whole
                // vectors).
                let full = cw / NP;
                let rest = cw - full * NP;
                for j in 0..panels {
                    let rows_j = MR.min(c1 - c0 - j * MR);
                    let plane = c0 + j * MR - out_channels.start;
                    let o = plane * g.out_stride + y * g.out_w + cx;
                    // Tiles store straight into the output when the panel's row
                    // count is what the program stores (4 or 8) and the tile is
                    // whole; others go through `t`.
                    let stores = rows_j == 8 || rows_j == 4;
                    let mut tiles = [(0, full, NP / 4, stores), (full * NP, 1, 0, stores)];
                    tiles[1].2 = rest.div_ceil(4);
                    tiles[1].3 = stores && rest.is_multiple_of(4);
                    for (x, nt, nv, direct) in tiles {
                        if nt == 0 || nv == 0 {
                            continue;
                        }
                        let mut a = Tiles {
                            nt,
                            // Column 2x < 2 cw of buffer 0 (a checked slice).
                            src: rows[0][2 * x..].as_ptr(),
                            w: wpack[j * K * MR..].as_ptr(),
                            bias: bias_tab[j * BIAS_TAB..].as_ptr(),
                            out: core::ptr::null_mut(),
                            os: 4 * g.out_stride,
                            relu: p.relu,
                            eight: rows_j > 4,
                            nv,
                        };
                        if direct {
                            // SAFETY: `check` proved the output holds planes `0 ..
                            // out_channels.len()` of `out_h * out_w` floats at
                            // `plane * out_stride`; the strip writes rows `plane ..
                            // plane + rows_j` at pixels `y * out_w + cx + x .. + 4
                            // nv nt <= cw`, inside the row (cx + cw <= out_w). The
                            // buffer reads end at column 2 (x + 4 nv nt) + 2 <=
                            // need <= ROW; weights and bias table hold panel j.
                            unsafe {
                                a.out = output.as_mut_ptr().add(o + x);
                                strip(&a);
                            }
                        } else {
                            for i in 0..nt {
                                let xi = x + i * 4 * nv;
                                let n = (4 * nv).min(cw - xi);
                                a.nt = 1;
                                a.os = 4 * NP;
                                let at = (o + xi, g.out_stride);
                                via_stack_tile(output, at, (rows_j, n, NP), |t| {
                                    // SAFETY: as above for the buffers; the tile
                                    // writes `t`, at most MR rows of 4 nv <= NP
                                    // floats, NP floats apart (MR NP <= 96).
                                    unsafe {
                                        a.src = rows[0].as_ptr().add(2 * xi);
                                        a.out = t;
                                        strip(&a);
                                    }
                                });
                            }
                        }
                    }
                }
                cx += cw;
            }
        }
        c0 = c1;
    }
    Ok(())
}

/// Fills columns `0 .. need` of the 9 padded row buffers of output row `y` and
/// the chunk at output column `cx`: buffer `3 ci + ky` is input row `2 y + ky -
/// pad_top` of channel `ci`, its column `c` input column `2 cx - pad_left + c`,
/// zero outside the input.
pub(super) fn fill_rows(
    rows: &mut [[f32; ROW]; 9],
    input: &[f32],
    g: &PlaneGeom,
    y: usize,
    cx: usize,
    need: usize,
) {
    let first = (2 * cx) as isize - g.pad_left as isize;
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
        copy_prefix(&input[src + lo..src + hi], &mut buf[at..at + hi - lo]);
        buf[at + hi - lo..need].fill(0.0);
    }
}

/// Runs one register tile whose rows or columns are not all wanted: `tile` writes
/// it into a stack tile (rows `pitch` floats apart, at most 96 floats), whose
/// first `n` floats of rows `0 .. rows` are then copied to `output` at `at + r
/// stride`. Shared by the 8/4-row and the 12-row stem drivers.
pub(super) fn via_stack_tile(
    output: &mut [f32],
    (at, stride): (usize, usize),
    (rows, n, pitch): (usize, usize, usize),
    tile: impl FnOnce(*mut f32),
) {
    let mut t = [0f32; 96];
    tile(t.as_mut_ptr());
    for r in 0..rows {
        let o = at + r * stride;
        output[o..o + n].copy_from_slice(&t[r * pitch..r * pitch + n]);
    }
}

/// One strip call: `nt` register tiles side by side along an output row.
struct Tiles {
    /// Tiles (at least 1).
    nt: usize,
    /// Column `2 x` of row buffer 0 (buffers are `ROW` floats apart).
    src: *const f32,
    /// The panel's packed weights: `K` steps of `MR` floats.
    w: *const f32,
    /// The panel's bias table (`BIAS_TAB` floats).
    bias: *const f32,
    /// Output row 0 of tile 0; tile `i` starts `4 nv i` floats later.
    out: *mut f32,
    /// Bytes between output rows.
    os: usize,
    /// Clamp at zero.
    relu: bool,
    /// 8 rows (else 4).
    eight: bool,
    /// Pixel vectors per tile (1 to 3).
    nv: usize,
}

/// `$nv`-vector lane FMAs of one row: `v$a v$b v$c += (v$x v$y v$z) * v$w.s[$l]`.
macro_rules! srow {
    (1, $a:literal $b:literal $c:literal, $x:literal $y:literal $z:literal, $w:literal, $l:literal) => {
        concat!("fmla v", $a, ".4s, v", $x, ".4s, v", $w, ".s[", $l, "]\n")
    };
    (2, $a:literal $b:literal $c:literal, $x:literal $y:literal $z:literal, $w:literal, $l:literal) => {
        concat!(
            srow!(1, $a $b $c, $x $y $z, $w, $l),
            "fmla v", $b, ".4s, v", $y, ".4s, v", $w, ".s[", $l, "]\n",
        )
    };
    (3, $a:literal $b:literal $c:literal, $x:literal $y:literal $z:literal, $w:literal, $l:literal) => {
        concat!(
            srow!(2, $a $b $c, $x $y $z, $w, $l),
            "fmla v", $c, ".4s, v", $z, ".4s, v", $w, ".s[", $l, "]\n",
        )
    };
}

/// One tap (K step) for rows 0-3 (weights in `v6`), and 4-7 (`v7`) when 8.
macro_rules! tap {
    (4, $nv:tt, $x:literal $y:literal $z:literal) => {
        concat!(
            srow!($nv, 8 9 10, $x $y $z, 6, 0),
            srow!($nv, 11 12 13, $x $y $z, 6, 1),
            srow!($nv, 14 15 16, $x $y $z, 6, 2),
            srow!($nv, 17 18 19, $x $y $z, 6, 3),
        )
    };
    (8, $nv:tt, $x:literal $y:literal $z:literal) => {
        concat!(
            tap!(4, $nv, $x $y $z),
            srow!($nv, 20 21 22, $x $y $z, 7, 0),
            srow!($nv, 23 24 25, $x $y $z, 7, 1),
            srow!($nv, 26 27 28, $x $y $z, 7, 2),
            srow!($nv, 29 30 31, $x $y $z, 7, 3),
        )
    };
}

/// Weight load of one tap (a panel step is 32 bytes).
macro_rules! wld {
    (4) => {
        "ldr q6, [{wc}], #32\n"
    };
    (8) => {
        "ld1 {{v6.4s, v7.4s}}, [{wc}], #32\n"
    };
}

/// `$nv` deinterleaving loads from cursor `$c`: even columns to `v0 v2 v4`, odd
/// columns to `v1 v3 v5`; the cursor ends `32 ($nv - 1)` bytes on.
macro_rules! lds {
    (1, $c:literal) => {
        concat!("ld2 {{v0.4s, v1.4s}}, [{", $c, "}]\n")
    };
    (2, $c:literal) => {
        concat!(
            "ld2 {{v0.4s, v1.4s}}, [{",
            $c,
            "}], #32\n",
            "ld2 {{v2.4s, v3.4s}}, [{",
            $c,
            "}]\n",
        )
    };
    (3, $c:literal) => {
        concat!(
            "ld2 {{v0.4s, v1.4s}}, [{",
            $c,
            "}], #32\n",
            "ld2 {{v2.4s, v3.4s}}, [{",
            $c,
            "}], #32\n",
            "ld2 {{v4.4s, v5.4s}}, [{",
            $c,
            "}]\n",
        )
    };
}

/// Bias table load ([`fill_bias_table`]'s three copies per row, four floats
/// broadcast per `ld4r`): row `r` into `v8 + 3r ..`, four rows or eight.
macro_rules! bias {
    (4) => {
        concat!(
            "ld4r {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{bc}], #16\n",
            "ld4r {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{bc}], #16\n",
            "ld4r {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{bc}]\n",
        )
    };
    (8) => {
        concat!(
            "ld4r {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{bc}], #16\n",
            "ld4r {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{bc}], #16\n",
            "ld4r {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{bc}], #16\n",
            "ld4r {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{bc}], #16\n",
            "ld4r {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{bc}], #16\n",
            "ld4r {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{bc}]\n",
        )
    };
}

/// ReLU (`v6` holds zero) of one row's `$nv` vectors.
macro_rules! relu_row {
    (1, $a:literal $b:literal $c:literal) => {
        concat!("fmax v", $a, ".4s, v", $a, ".4s, v6.4s\n")
    };
    (2, $a:literal $b:literal $c:literal) => {
        concat!(relu_row!(1, $a $b $c), "fmax v", $b, ".4s, v", $b, ".4s, v6.4s\n")
    };
    (3, $a:literal $b:literal $c:literal) => {
        concat!(relu_row!(2, $a $b $c), "fmax v", $c, ".4s, v", $c, ".4s, v6.4s\n")
    };
}

/// Store of one row's `$nv` vectors at cursor `{oc}`, then one output row on.
macro_rules! st_row {
    (1, $a:literal $b:literal $c:literal) => {
        concat!("st1 {{v", $a, ".4s}}, [{oc}], {os}\n")
    };
    (2, $a:literal $b:literal $c:literal) => {
        concat!("st1 {{v", $a, ".4s, v", $b, ".4s}}, [{oc}], {os}\n")
    };
    (3, $a:literal $b:literal $c:literal) => {
        concat!(
            "st1 {{v",
            $a,
            ".4s, v",
            $b,
            ".4s, v",
            $c,
            ".4s}}, [{oc}], {os}\n"
        )
    };
}

/// `$m!($nv, a b c)` for the accumulator triple of each of the `$r` rows.
macro_rules! per_row {
    (4, $nv:tt, $m:ident) => {
        concat!($m!($nv, 8 9 10), $m!($nv, 11 12 13), $m!($nv, 14 15 16), $m!($nv, 17 18 19))
    };
    (8, $nv:tt, $m:ident) => {
        concat!(
            per_row!(4, $nv, $m),
            $m!($nv, 20 21 22),
            $m!($nv, 23 24 25),
            $m!($nv, 26 27 28),
            $m!($nv, 29 30 31),
        )
    };
}

/// The strip program for `$r` (4 or 8) rows and `$nv` pixel vectors: per tile,
/// the bias table, 9 row buffers of 3 taps, ReLU if `{f}` bit 0, the stores.
macro_rules! stem_asm {
    ($r:tt, $nv:tt) => {
        concat!(
            "20:\n",
            "mov {wc}, {w}\n",
            "mov {bc}, {b}\n",
            bias!($r),
            "mov {p}, {src}\n",
            "mov {n}, #9\n",
            "21:\n",
            "add {q}, {p}, #8\n",
            lds!($nv, "p"),
            wld!($r),
            tap!($r, $nv, 0 2 4),
            wld!($r),
            tap!($r, $nv, 1 3 5),
            lds!($nv, "q"),
            wld!($r),
            tap!($r, $nv, 0 2 4),
            "add {p}, {p}, {rb}\n",
            "subs {n}, {n}, #1\n",
            "b.ne 21b\n",
            "tbz {f}, #0, 22f\n",
            "movi v6.4s, #0\n",
            per_row!($r, $nv, relu_row),
            "22:\n",
            "mov {oc}, {o}\n",
            per_row!($r, $nv, st_row),
            "add {src}, {src}, #",
            $nv,
            "*32\n",
            "add {o}, {o}, #",
            $nv,
            "*16\n",
            "subs {nt}, {nt}, #1\n",
            "b.ne 20b\n",
        )
    };
}

/// Runs the strip program for `$r` rows and `$nv` vectors on the [`Tiles`] `$a`.
macro_rules! run_stem {
    ($r:tt, $nv:tt, $a:ident) => {
        asm!(
            stem_asm!($r, $nv),
            nt = inout(reg) $a.nt => _,
            src = inout(reg) $a.src => _,
            w = in(reg) $a.w,
            b = in(reg) $a.bias,
            o = inout(reg) $a.out => _,
            os = in(reg) $a.os,
            rb = in(reg) 4 * ROW - 32 * ($nv - 1),
            f = in(reg) $a.relu as u64,
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
        )
    };
}

/// Runs `a.nt` tiles of `4 a.nv` pixels; stores 8 rows when `a.eight`, else 4.
/// K row `ci * 9 + ky * 3 + kx` of pixel `t` is buffer `3 ci + ky` at column
/// `2 x + 2 t + kx`.
///
/// # Safety
/// For every tile `i`, columns `2 x + 8 nv i .. 2 x + 8 nv (i + 1) + 2` of every
/// row buffer (at `a.src + 8 nv i + ROW b`) are readable; `a.w` holds `K * MR`
/// floats and `a.bias` `BIAS_TAB`; the stored rows of the output (`a.os` bytes
/// apart) hold `4 nv a.nt` writable floats from `a.out`; `a.nt >= 1`, `1 <= a.nv
/// <= 3`.
unsafe fn strip(a: &Tiles) {
    // SAFETY: forwarded contract; the programs read the buffers, weights and bias
    // table and write the output rows exactly as described there.
    unsafe {
        match (a.eight, a.nv) {
            (true, 1) => run_stem!(8, 1, a),
            (true, 2) => run_stem!(8, 2, a),
            (true, _) => run_stem!(8, 3, a),
            (false, 1) => run_stem!(4, 1, a),
            (false, 2) => run_stem!(4, 2, a),
            (false, _) => run_stem!(4, 3, a),
        }
    }
}

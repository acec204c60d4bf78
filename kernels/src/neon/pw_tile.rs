//! The pointwise GEMM's register tiles, in inline assembly: `R` rows of one packed
//! weight panel (2, 4, 6 or 8) times `4 NV` pixels (`NV` = 1, 2 or 3 vectors),
//! accumulated in `v8 ..` with row `r` in the consecutive registers `v8 + 3r ..`,
//! so a row loads, stores and initialises with one multi-register `ld1`/`st1`.
//! One call runs a strip of `nt` tiles side by side (same panel, consecutive
//! pixels), so the per-call setup is paid once per strip.
//!
//! Per K step a tile issues one `ld1` of its pixels (post-indexed by the pixel
//! stride: a packed buffer's 48 bytes, or a plane stride when the K rows are
//! planes at a constant distance and are read in place), `R * NV` lane FMAs, and
//! every second step one `ld1 {4 regs}` of weights (two K steps of a panel). The K
//! loop runs eight steps per iteration, then blocks of four, two and one.
//! Intrinsics cannot express this: LLVM splits multi-register loads and stores
//! into `ldp`/`ldr` pairs and does not post-index, which costs a sixth more
//! instructions per K step for small tiles and twice the stores in the epilogue.
//!
//! Epilogue, chosen by `flags`: whole tiles (12 pixels) with one of the five flag
//! sets of ShuffleNet's convs run a program built for it ([`strip_whole`],
//! `strip_fixed_asm!`); other tiles test the flags per tile (a test and branch
//! per flag; the two reads of the output are out of line, so the common path falls
//! through):
//! start from the bias table (or from the partial sums in the output, [`INIT_OUT`]),
//! add the output's values ([`ADD_OUT`], the in-place residual), clamp at zero
//! ([`RELU`]) or at each row's floor ([`FLOOR`], out of line: two `ld4r` put the
//! eight floors in `v0 .. v7`, free after the K loop), store the rows with `st1`
//! post-indexed by the output stride. An in-place residual whose bias is zero
//! (the planner's offset chain) starts from the output instead ([`INIT_OUT`]):
//! its epilogue loads each row once and adds nothing, 38 instructions fewer per
//! 8x12 tile than bias, load and add.
//!
//! Per-tile bookkeeping is kept to the weight cursor's reset, one pixel-cursor
//! add and the loop count: the bias table's last load and the last row's store
//! are post-indexed by registers that carry the table back to its start and the
//! output on to the next tile, and the pixel cursor steps from the end of one
//! tile's K loop to the start of the next. (kernel_icount, 0.5x g=3 at 224x224:
//! 18 such instructions per tile before, 12 after.)

use core::arch::aarch64::{
    vcopyq_laneq_f32, vdupq_laneq_f32, vextq_f32, vld1q_f32, vst1q_f32, vzip1q_f32,
};
use core::arch::asm;

/// Start from the values in the output (partial sums of earlier K chunks) instead
/// of the bias table.
pub(crate) const INIT_OUT: u64 = 1;
/// Add the values in the output after the K loop (in-place residual).
pub(crate) const ADD_OUT: u64 = 2;
/// Clamp at zero before the store.
pub(crate) const RELU: u64 = 4;
/// Clamp each row at its own floor (the strip's floor table) before the store,
/// instead of [`RELU`]'s zero.
pub(crate) const FLOOR: u64 = 8;

/// Pixels of a whole tile.
pub(crate) const NR: usize = 12;
/// Floats of one panel's bias table: 3 copies of the bias of each of 8 rows, so
/// that each `ld4r` of four consecutive floats broadcasts them into four
/// consecutive accumulators (row `r` is `v8 + 3r ..`).
pub(crate) const BIAS_TAB: usize = 3 * 8;
/// Floats of one panel's table for [`strip`]: the bias table, then the 8 row
/// floors ([`FLOOR`]).
pub(crate) const PANEL_TAB: usize = BIAS_TAB + 8;

/// The `NV` FMAs of one weight row: `v$a.. += v0.. * v$w.s[$l]`.
macro_rules! row {
    (1, $a:literal $b:literal $c:literal, $w:literal, $l:literal) => {
        concat!("fmla v", $a, ".4s, v0.4s, v", $w, ".s[", $l, "]\n")
    };
    (2, $a:literal $b:literal $c:literal, $w:literal, $l:literal) => {
        concat!(
            row!(1, $a $b $c, $w, $l),
            "fmla v", $b, ".4s, v1.4s, v", $w, ".s[", $l, "]\n",
        )
    };
    (3, $a:literal $b:literal $c:literal, $w:literal, $l:literal) => {
        concat!(
            row!(2, $a $b $c, $w, $l),
            "fmla v", $c, ".4s, v2.4s, v", $w, ".s[", $l, "]\n",
        )
    };
}

/// One K step of the first `$r` rows: rows 0-3 take their weights from the lanes
/// of `v$lo`, rows 4-7 from `v$hi`.
macro_rules! step {
    (2, $nv:tt, $lo:literal, $hi:literal) => {
        concat!(row!($nv, 8 9 10, $lo, 0), row!($nv, 11 12 13, $lo, 1))
    };
    (4, $nv:tt, $lo:literal, $hi:literal) => {
        concat!(
            step!(2, $nv, $lo, $hi),
            row!($nv, 14 15 16, $lo, 2),
            row!($nv, 17 18 19, $lo, 3),
        )
    };
    (6, $nv:tt, $lo:literal, $hi:literal) => {
        concat!(
            step!(4, $nv, $lo, $hi),
            row!($nv, 20 21 22, $hi, 0),
            row!($nv, 23 24 25, $hi, 1),
        )
    };
    (8, $nv:tt, $lo:literal, $hi:literal) => {
        concat!(
            step!(6, $nv, $lo, $hi),
            row!($nv, 26 27 28, $hi, 2),
            row!($nv, 29 30 31, $hi, 3),
        )
    };
}

/// Pixel load of one K step (cursor `{pc}`).
macro_rules! ldx {
    (1) => {
        "ld1 {{v0.4s}}, [{pc}], {ps}\n"
    };
    (2) => {
        "ld1 {{v0.4s, v1.4s}}, [{pc}], {ps}\n"
    };
    (3) => {
        "ld1 {{v0.4s, v1.4s, v2.4s}}, [{pc}], {ps}\n"
    };
}

/// Two K steps: one weight load (two steps of the panel), two pixel loads.
macro_rules! two {
    ($r:tt, $nv:tt) => {
        concat!(
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{wc}], #64\n",
            ldx!($nv),
            step!($r, $nv, 4, 5),
            ldx!($nv),
            step!($r, $nv, 6, 7),
        )
    };
}

/// Per-row text: `$m!($nv, a b c)` for the accumulator triple of each of the `$r`
/// rows.
macro_rules! rows {
    (2, $nv:tt, $m:ident) => {
        concat!($m!($nv, 8 9 10), $m!($nv, 11 12 13))
    };
    (4, $nv:tt, $m:ident) => {
        concat!(rows!(2, $nv, $m), $m!($nv, 14 15 16), $m!($nv, 17 18 19))
    };
    (6, $nv:tt, $m:ident) => {
        concat!(rows!(4, $nv, $m), $m!($nv, 20 21 22), $m!($nv, 23 24 25))
    };
    (8, $nv:tt, $m:ident) => {
        concat!(rows!(6, $nv, $m), $m!($nv, 26 27 28), $m!($nv, 29 30 31))
    };
}

/// As [`rows!`], with `$last!` for the last row instead of `$m!`.
macro_rules! rows_last {
    (2, $nv:tt, $m:ident, $last:ident) => {
        concat!($m!($nv, 8 9 10), $last!($nv, 11 12 13))
    };
    (4, $nv:tt, $m:ident, $last:ident) => {
        concat!(rows!(2, $nv, $m), $m!($nv, 14 15 16), $last!($nv, 17 18 19))
    };
    (6, $nv:tt, $m:ident, $last:ident) => {
        concat!(rows!(4, $nv, $m), $m!($nv, 20 21 22), $last!($nv, 23 24 25))
    };
    (8, $nv:tt, $m:ident, $last:ident) => {
        concat!(rows!(6, $nv, $m), $m!($nv, 26 27 28), $last!($nv, 29 30 31))
    };
}

/// The register list of one accumulator row.
macro_rules! regs {
    (1, $a:literal $b:literal $c:literal) => {
        concat!("{{v", $a, ".4s}}")
    };
    (2, $a:literal $b:literal $c:literal) => {
        concat!("{{v", $a, ".4s, v", $b, ".4s}}")
    };
    (3, $a:literal $b:literal $c:literal) => {
        concat!("{{v", $a, ".4s, v", $b, ".4s, v", $c, ".4s}}")
    };
}

/// Loads one accumulator row from the output (cursor `{t}`).
macro_rules! ld_row {
    ($nv:tt, $a:literal $b:literal $c:literal) => {
        concat!("ld1 ", regs!($nv, $a $b $c), ", [{t}], {os}\n")
    };
}

/// Adds the output row at cursor `{t}` to one accumulator row.
macro_rules! add_row {
    (1, $a:literal $b:literal $c:literal) => {
        concat!(
            "ld1 {{v0.4s}}, [{t}], {os}\n",
            "fadd v",
            $a,
            ".4s, v",
            $a,
            ".4s, v0.4s\n",
        )
    };
    (2, $a:literal $b:literal $c:literal) => {
        concat!(
            "ld1 {{v0.4s, v1.4s}}, [{t}], {os}\n",
            "fadd v",
            $a,
            ".4s, v",
            $a,
            ".4s, v0.4s\n",
            "fadd v",
            $b,
            ".4s, v",
            $b,
            ".4s, v1.4s\n",
        )
    };
    (3, $a:literal $b:literal $c:literal) => {
        concat!(
            "ld1 {{v0.4s, v1.4s, v2.4s}}, [{t}], {os}\n",
            "fadd v",
            $a,
            ".4s, v",
            $a,
            ".4s, v0.4s\n",
            "fadd v",
            $b,
            ".4s, v",
            $b,
            ".4s, v1.4s\n",
            "fadd v",
            $c,
            ".4s, v",
            $c,
            ".4s, v2.4s\n",
        )
    };
}

/// Clamps one accumulator row at zero (`v3` holds zero).
macro_rules! relu_row {
    (1, $a:literal $b:literal $c:literal) => {
        concat!("fmax v", $a, ".4s, v", $a, ".4s, v3.4s\n")
    };
    (2, $a:literal $b:literal $c:literal) => {
        concat!(
            relu_row!(1, $a $b $c),
            "fmax v", $b, ".4s, v", $b, ".4s, v3.4s\n",
        )
    };
    (3, $a:literal $b:literal $c:literal) => {
        concat!(
            relu_row!(2, $a $b $c),
            "fmax v", $c, ".4s, v", $c, ".4s, v3.4s\n",
        )
    };
}

/// Clamps one accumulator row at the floor broadcast in `v$f`.
macro_rules! floor_row {
    (1, $a:literal $b:literal $c:literal, $f:literal) => {
        concat!("fmax v", $a, ".4s, v", $a, ".4s, v", $f, ".4s\n")
    };
    (2, $a:literal $b:literal $c:literal, $f:literal) => {
        concat!(
            floor_row!(1, $a $b $c, $f),
            "fmax v", $b, ".4s, v", $b, ".4s, v", $f, ".4s\n",
        )
    };
    (3, $a:literal $b:literal $c:literal, $f:literal) => {
        concat!(
            floor_row!(2, $a $b $c, $f),
            "fmax v", $c, ".4s, v", $c, ".4s, v", $f, ".4s\n",
        )
    };
}

/// Loads the floors of the `$r` rows (after the bias table at `{b}`), row `r`'s
/// broadcast into `v$r`, and clamps each row at its own.
macro_rules! floor_rows {
    (2, $nv:tt) => {
        concat!(
            "add {t}, {b}, #96\n",
            "ld2r {{v0.4s, v1.4s}}, [{t}]\n",
            floor_row!($nv, 8 9 10, 0),
            floor_row!($nv, 11 12 13, 1),
        )
    };
    (4, $nv:tt) => {
        concat!(
            "add {t}, {b}, #96\n",
            "ld4r {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{t}], #16\n",
            floor_row!($nv, 8 9 10, 0),
            floor_row!($nv, 11 12 13, 1),
            floor_row!($nv, 14 15 16, 2),
            floor_row!($nv, 17 18 19, 3),
        )
    };
    (6, $nv:tt) => {
        concat!(
            floor_rows!(4, $nv),
            "ld2r {{v4.4s, v5.4s}}, [{t}]\n",
            floor_row!($nv, 20 21 22, 4),
            floor_row!($nv, 23 24 25, 5),
        )
    };
    (8, $nv:tt) => {
        concat!(
            floor_rows!(4, $nv),
            "ld4r {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{t}]\n",
            floor_row!($nv, 20 21 22, 4),
            floor_row!($nv, 23 24 25, 5),
            floor_row!($nv, 26 27 28, 6),
            floor_row!($nv, 29 30 31, 7),
        )
    };
}

/// Stores one accumulator row at cursor `{o}`.
macro_rules! st_row {
    ($nv:tt, $a:literal $b:literal $c:literal) => {
        concat!("st1 ", regs!($nv, $a $b $c), ", [{o}], {os}\n")
    };
}

/// Stores the last accumulator row and moves the cursor on to the next tile's
/// row 0 (`{ol}`).
macro_rules! st_last {
    ($nv:tt, $a:literal $b:literal $c:literal) => {
        concat!("st1 ", regs!($nv, $a $b $c), ", [{o}], {ol}\n")
    };
}

/// Bias table load of the `$r` rows (any `$nv`), the cursor left at the table's
/// start: `ld4r` broadcasts four table floats into four consecutive accumulators,
/// so the `3 r` registers `v8 ..` take `ceil(3 r / 4)` loads. With fewer than three
/// vectors a row, the registers past each row's last take values nothing reads.
macro_rules! ld_bias {
    (2, $nv:tt) => {
        concat!(
            "ld4r {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{b}], #16\n",
            "ld2r {{v12.4s, v13.4s}}, [{b}], {bb}\n",
        )
    };
    (4, $nv:tt) => {
        concat!(
            "ld4r {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{b}], #16\n",
            "ld4r {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{b}], #16\n",
            "ld4r {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{b}], {bb}\n",
        )
    };
    (6, $nv:tt) => {
        concat!(
            "ld4r {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{b}], #16\n",
            "ld4r {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{b}], #16\n",
            "ld4r {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{b}], #16\n",
            "ld4r {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{b}], #16\n",
            "ld2r {{v24.4s, v25.4s}}, [{b}], {bb}\n",
        )
    };
    (8, $nv:tt) => {
        concat!(
            "ld4r {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{b}], #16\n",
            "ld4r {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{b}], #16\n",
            "ld4r {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{b}], #16\n",
            "ld4r {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{b}], #16\n",
            "ld4r {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{b}], #16\n",
            "ld4r {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{b}], {bb}\n",
        )
    };
}

/// The K loop of one tile: eight K steps per iteration, then blocks of four, two
/// and one (labels 22-27).
macro_rules! k_loop {
    ($r:tt, $nv:tt) => {
        concat!(
            "22:\n",
            "lsr {n}, {kc}, #3\n",
            "cbz {n}, 24f\n",
            "23:\n",
            two!($r, $nv),
            two!($r, $nv),
            two!($r, $nv),
            two!($r, $nv),
            "subs {n}, {n}, #1\n",
            "b.ne 23b\n",
            "24:\n",
            "tbz {kc}, #2, 25f\n",
            two!($r, $nv),
            two!($r, $nv),
            "25:\n",
            "tbz {kc}, #1, 26f\n",
            two!($r, $nv),
            "26:\n",
            "tbz {kc}, #0, 27f\n",
            "ld1 {{v4.4s, v5.4s}}, [{wc}], #32\n",
            ldx!($nv),
            step!($r, $nv, 4, 5),
            "27:\n",
        )
    };
}

/// The strip program for `$r` rows and `$nv` pixel vectors, epilogue chosen by
/// `{f}` per tile: `{nt}` tiles, tile `i` reading its pixels from `{pc} + i {pt}`
/// (the cursor steps by `{dp}` = `{pt} - {kc} {ps}` from the end of one tile's K
/// loop to the next) and writing its rows at `{o} + 16 $nv i`.
macro_rules! strip_asm {
    ($r:tt, $nv:tt) => {
        concat!(
            "movi v3.4s, #0\n",
            "20:\n",
            "mov {wc}, {w}\n",
            // Accumulators: the bias table, or (out of line) the output's partial
            // sums.
            "tbnz {f}, #0, 30f\n",
            ld_bias!($r, $nv),
            k_loop!($r, $nv),
            // Epilogue: the residual (out of line), ReLU or the row floors (out of
            // line), the stores.
            "tbnz {f}, #1, 31f\n",
            "28:\n",
            // No zero clamp: maybe the floors (out of line, so a ReLU tile pays
            // one test, as before there were floors).
            "tbz {f}, #2, 32f\n",
            rows!($r, $nv, relu_row),
            "29:\n",
            rows_last!($r, $nv, st_row, st_last),
            // Next tile.
            "add {pc}, {pc}, {dp}\n",
            "subs {nt}, {nt}, #1\n",
            "b.ne 20b\n",
            "b 40f\n",
            "30:\n",
            "mov {t}, {o}\n",
            rows!($r, $nv, ld_row),
            "b 22b\n",
            "31:\n",
            "mov {t}, {o}\n",
            rows!($r, $nv, add_row),
            "b 28b\n",
            "32:\n",
            "tbz {f}, #3, 29b\n",
            floor_rows!($r, $nv),
            "b 29b\n",
            "40:\n",
        )
    };
}

/// Accumulator start of `strip_fixed_asm!`: the bias table or the output.
macro_rules! init_acc {
    (bias, $r:tt, $nv:tt) => {
        ld_bias!($r, $nv)
    };
    (out, $r:tt, $nv:tt) => {
        concat!("mov {t}, {o}\n", rows!($r, $nv, ld_row))
    };
}

/// The in-place residual of `strip_fixed_asm!`, or nothing.
macro_rules! add_acc {
    (add, $r:tt, $nv:tt) => {
        concat!("mov {t}, {o}\n", rows!($r, $nv, add_row))
    };
    (keep, $r:tt, $nv:tt) => {
        ""
    };
}

/// The clamp of `strip_fixed_asm!`: at zero, at the row floors, or none.
macro_rules! clamp_acc {
    (relu, $r:tt, $nv:tt) => {
        rows!($r, $nv, relu_row)
    };
    (floor, $r:tt, $nv:tt) => {
        floor_rows!($r, $nv)
    };
    (none, $r:tt, $nv:tt) => {
        ""
    };
}

/// `strip_asm!` with the epilogue fixed when the program is built (`$init`:
/// `bias` or `out`, `$add`: `add` or `keep`, `$clamp`: `relu`, `floor` or
/// `none`): no flag tests or jumps to out-of-line parts per tile, 3-6 instructions
/// fewer per tile. `{f}` is unused (named in a comment, as asm requires).
macro_rules! strip_fixed_asm {
    ($r:tt, $nv:tt, $init:ident, $add:ident, $clamp:ident) => {
        concat!(
            "// unused by some epilogues: {bb} {b} {t} {f}\n",
            "movi v3.4s, #0\n",
            "20:\n",
            "mov {wc}, {w}\n",
            init_acc!($init, $r, $nv),
            k_loop!($r, $nv),
            add_acc!($add, $r, $nv),
            clamp_acc!($clamp, $r, $nv),
            rows_last!($r, $nv, st_row, st_last),
            "add {pc}, {pc}, {dp}\n",
            "subs {nt}, {nt}, #1\n",
            "b.ne 20b\n",
        )
    };
}

/// Runs a strip program (`$prog`) for `$r` rows and `$nv` vectors.
macro_rules! run_strip {
    ($r:tt, $nv:tt, $a:ident, $prog:expr) => {
        asm!(
            $prog,
            nt = inout(reg) $a.nt => _,
            kc = in(reg) $a.kc,
            pc = inout(reg) $a.px => _,
            ps = in(reg) $a.ps,
            dp = in(reg) $a.pt.wrapping_sub(($a.kc as isize).wrapping_mul($a.ps)),
            w = in(reg) $a.w,
            b = inout(reg) $a.bias => _,
            bb = in(reg) bias_back($r),
            o = inout(reg) $a.out => _,
            os = in(reg) $a.os,
            ol = in(reg) (16 * $nv as isize).wrapping_sub(($r - 1) * $a.os as isize),
            f = in(reg) $a.flags,
            wc = out(reg) _,
            t = out(reg) _,
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

/// The register post-index of the bias table's last load in [`ld_bias!`] for `r`
/// rows: minus the bytes the loads before it stepped over (`ceil(3 r / 4)` loads,
/// all but the last post-indexed by 16 bytes).
const fn bias_back(r: usize) -> isize {
    -16 * ((3 * r).div_ceil(4) as isize - 1)
}

/// Runs `$r` rows of whole tiles (three vectors): the five flag sets of
/// ShuffleNet's convs with `strip_fixed_asm!`, others with `strip_asm!`.
macro_rules! run_whole {
    ($r:tt, $a:ident) => {
        match $a.flags {
            RELU => run_strip!($r, 3, $a, strip_fixed_asm!($r, 3, bias, keep, relu)),
            f if f == INIT_OUT | FLOOR => {
                run_strip!($r, 3, $a, strip_fixed_asm!($r, 3, out, keep, floor))
            }
            f if f == ADD_OUT | RELU => {
                run_strip!($r, 3, $a, strip_fixed_asm!($r, 3, bias, add, relu))
            }
            FLOOR => run_strip!($r, 3, $a, strip_fixed_asm!($r, 3, bias, keep, floor)),
            f if f == ADD_OUT | FLOOR => {
                run_strip!($r, 3, $a, strip_fixed_asm!($r, 3, bias, add, floor))
            }
            _ => run_strip!($r, 3, $a, strip_asm!($r, 3)),
        }
    };
}

/// Runs the strip program for `$r` rows, any `NV`.
macro_rules! run_nv {
    ($r:tt, $nv:expr, $a:ident) => {
        match $nv {
            1 => run_strip!($r, 1, $a, strip_asm!($r, 1)),
            2 => run_strip!($r, 2, $a, strip_asm!($r, 2)),
            _ => run_strip!($r, 3, $a, strip_asm!($r, 3)),
        }
    };
}

/// One strip call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strip {
    /// Tiles (at least 1).
    pub nt: usize,
    /// K steps (at least 1).
    pub kc: usize,
    /// Pixels of K step 0 of tile 0.
    pub px: *const f32,
    /// Bytes from one K step's pixels to the next (any sign).
    pub ps: isize,
    /// Bytes from one tile's pixels to the next tile's (any sign).
    pub pt: isize,
    /// The panel's weights from the strip's first K step on (`kc * 8` floats).
    pub w: *const f32,
    /// The panel's table ([`PANEL_TAB`] floats: [`fill_bias_table`], then the
    /// row floors).
    pub bias: *const f32,
    /// Row 0 of tile 0 of the output; tile `i` starts `4 NV i` floats later.
    pub out: *mut f32,
    /// Bytes from one output row to the next.
    pub os: usize,
    /// [`INIT_OUT`], [`ADD_OUT`], [`RELU`] or [`FLOOR`] (not both).
    pub flags: u64,
}

/// Runs `s.nt` register tiles of `rows` rows (2, 4, 6 or 8) and `nv` pixel
/// vectors (1, 2 or 3) over `s.kc` K steps, with the epilogue of `s.flags`.
///
/// # Safety
/// For every tile `i < nt`:
/// - pixels: for `k < kc`, the `4 nv` floats at byte address
///   `px + i pt + k ps` are readable;
/// - the weights `w .. w + 8 kc` and (unless [`INIT_OUT`]) the bias table's first
///   `3 rows` floats are readable; with [`FLOOR`], the `rows` floors from
///   `bias + BIAS_TAB` on;
/// - output: for `r < rows`, the `4 nv` floats at byte address
///   `out + 16 nv i + r os` are writable, and readable when `flags` has
///   [`INIT_OUT`] or [`ADD_OUT`].
#[inline(always)]
pub(crate) unsafe fn strip(rows: usize, nv: usize, s: Strip) {
    // SAFETY: the program reads pixels, weights, bias and output, and writes the
    // output, exactly within the extents of the caller's contract: per tile `kc`
    // pixel loads of `nv` vectors post-indexed by `ps`, `kc` K steps of 8
    // weights, the bias table's `rows` rows, `rows` output rows of `nv` vectors
    // post-indexed by `os`; tiles advance by `pt` and `16 nv` bytes. Every vector
    // register it touches is declared clobbered, and it uses no stack.
    unsafe {
        match rows {
            2 => run_nv!(2, nv, s),
            4 => run_nv!(4, nv, s),
            6 => run_nv!(6, nv, s),
            _ => run_nv!(8, nv, s),
        }
    }
}

/// [`strip`] for whole tiles (`nv = 3`), where the flag sets the convs of
/// ShuffleNet use (a unit's first conv: bias and ReLU; a stride-2 unit's branch
/// conv: bias and floors; the residual convs: output start and floors, or bias,
/// residual and floors or ReLU) run programs with their epilogue fixed
/// (`strip_fixed_asm!`): 3-6 instructions fewer per tile.
/// Kept apart from [`strip`] so that only the call sites that run whole tiles
/// inline these programs.
///
/// # Safety
/// As for [`strip`] with `nv = 3`.
#[inline(always)]
pub(crate) unsafe fn strip_whole(rows: usize, s: Strip) {
    // SAFETY: as in `strip`: the fixed programs make the same accesses as the
    // flag-tested one for the same flags.
    unsafe {
        match rows {
            2 => run_whole!(2, s),
            4 => run_whole!(4, s),
            6 => run_whole!(6, s),
            _ => run_whole!(8, s),
        }
    }
}

/// Fills a panel's bias table: floats `3 r .. 3 r + 3` hold `bias[r]` for `r <
/// rows`, zero for the rows up to 8: per four rows two lane broadcasts, a zip and
/// two lane inserts, no store per row.
///
/// # Safety
/// `tab .. tab + BIAS_TAB` must be writable (it may be uninitialised), `bias ..
/// bias + rows` readable, `rows <= 8`.
#[inline(always)]
pub(crate) unsafe fn fill_bias_table(tab: *mut f32, bias: *const f32, rows: usize) {
    // SAFETY: reads bias[r] for r < rows (two vectors when rows = 8, else a zero-
    // padded copy on the stack), writes floats 0 .. 24 = BIAS_TAB of `tab`.
    unsafe {
        let (lo, hi) = if rows == 8 {
            (vld1q_f32(bias), vld1q_f32(bias.add(4)))
        } else {
            let mut b = [0f32; 8];
            core::ptr::copy_nonoverlapping(bias, b.as_mut_ptr(), rows.min(8));
            (vld1q_f32(b.as_ptr()), vld1q_f32(b.as_ptr().add(4)))
        };
        for (i, v) in [lo, hi].into_iter().enumerate() {
            // [b0 b0 b0 b1], [b1 b1 b2 b2], [b2 b3 b3 b3]
            let next = vextq_f32::<1>(v, v);
            let t = tab.add(12 * i);
            vst1q_f32(t, vcopyq_laneq_f32::<3, 1>(vdupq_laneq_f32::<0>(v), v));
            vst1q_f32(t.add(4), vzip1q_f32(next, next));
            vst1q_f32(
                t.add(8),
                vcopyq_laneq_f32::<0, 2>(vdupq_laneq_f32::<3>(v), v),
            );
        }
    }
}

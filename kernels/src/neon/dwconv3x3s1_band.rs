//! 3x3 depthwise convolution, stride 1, on the row pipeline's short bands: `B` =
//! 1-4 output rows from the `B + 2` input rows around them, for a pair of body
//! column steps (8 output columns whose windows lie inside the row), every plane
//! of the call in one inline-assembly loop.
//!
//! Per plane: the filter (`ld1` of taps 0-7, `ldr` of tap 8) and the bias (`ld1r`),
//! one `mov` per accumulator, then per input row one three-register `ld1`
//! (post-indexed by the row length) and four `ext` giving both steps' taps, and
//! six lane FMAs per output row the input row feeds; one `st1` of two vectors per
//! output row. The intrinsics sweep it replaces on these bands spent 98
//! instructions per plane at `B = 2` (LLVM kept a pointer per row and step and
//! reloaded the row count from the stack); this loop takes 72.
//!
//! Each accumulator starts from the bias (or, with a zero bias, from its first
//! product: an `fmul`, no `mov`) and adds its input rows in order, three taps
//! each, as the general sweep does: results are bit-identical to it.

use super::common::{fmax_pair, st1_pair};
use super::dwconv3x3_s1::Planes;
use core::arch::asm;

/// `$m` (`fmla`, or `fmul` for an accumulator's first product) of accumulator
/// `$acc` with taps `v$x` times filter lane `v$w.s[$l]`.
macro_rules! fm {
    ($m:literal, $acc:literal, $x:literal, $w:literal, $l:literal) => {
        concat!($m, " v", $acc, ".4s, v", $x, ".4s, v", $w, ".s[", $l, "]\n")
    };
}

/// The six FMAs of one input row into the output row held in `v$a` (step 0,
/// taps `v4 v7 v16`) and `v$b` (step 1, taps `v5 v17 v18`), at filter row `dy`
/// (taps 0-3 in `v0`, 4-7 in `v1`, 8 in lane 0 of `v2`): filter tap `3 dy + dx`
/// is lane `(3 dy + dx) % 4` of `v((3 dy + dx) / 4)`. Filter row 0 is an output
/// row's first: its first product per step is `$m0`.
macro_rules! taps6 {
    ($a:literal, $b:literal, 0, $m0:literal) => {
        taps6!(@ $a, $b, $m0, 0 0, 0 1, 0 2)
    };
    ($a:literal, $b:literal, 1, $m0:literal) => {
        taps6!(@ $a, $b, "fmla", 0 3, 1 0, 1 1)
    };
    ($a:literal, $b:literal, 2, $m0:literal) => {
        taps6!(@ $a, $b, "fmla", 1 2, 1 3, 2 0)
    };
    (@ $a:literal, $b:literal, $m:literal, $w0:literal $l0:literal, $w1:literal $l1:literal,
     $w2:literal $l2:literal) => {
        concat!(
            fm!($m, $a, 4, $w0, $l0),
            fm!("fmla", $a, 7, $w1, $l1),
            fm!("fmla", $a, 16, $w2, $l2),
            fm!($m, $b, 5, $w0, $l0),
            fm!("fmla", $b, 17, $w1, $l1),
            fm!("fmla", $b, 18, $w2, $l2),
        )
    };
}

/// Loads the next input row (12 floats from the window start) and forms both
/// steps' taps.
macro_rules! ldrow {
    () => {
        concat!(
            "ld1 {{v4.4s, v5.4s, v6.4s}}, [{p}], {inw}\n",
            "ext v7.16b, v4.16b, v5.16b, #4\n",
            "ext v16.16b, v4.16b, v5.16b, #8\n",
            "ext v17.16b, v5.16b, v6.16b, #4\n",
            "ext v18.16b, v5.16b, v6.16b, #8\n",
        )
    };
}

/// Bias into the accumulator pair `v$a`, `v$b`.
macro_rules! init {
    ($a:literal, $b:literal) => {
        concat!("mov v", $a, ".16b, v3.16b\n", "mov v", $b, ".16b, v3.16b\n")
    };
}

/// The input rows of a band of `B` output rows, in order: each is loaded once and
/// feeds output row `y` (accumulators `v(20 + 2y)`, `v(21 + 2y)`) at filter row
/// `r - y` for every `y < B` with `0 <= r - y <= 2`. `$m` is the first product's
/// instruction: `fmla` onto the bias, or `fmul` (zero bias, no `mov`).
#[rustfmt::skip]
macro_rules! rows {
    (1, $m:literal) => { concat!(
        ldrow!(), taps6!(20, 21, 0, $m),
        ldrow!(), taps6!(20, 21, 1, $m),
        ldrow!(), taps6!(20, 21, 2, $m),
    ) };
    (2, $m:literal) => { concat!(
        ldrow!(), taps6!(20, 21, 0, $m),
        ldrow!(), taps6!(20, 21, 1, $m), taps6!(22, 23, 0, $m),
        ldrow!(), taps6!(20, 21, 2, $m), taps6!(22, 23, 1, $m),
        ldrow!(), taps6!(22, 23, 2, $m),
    ) };
    (3, $m:literal) => { concat!(
        ldrow!(), taps6!(20, 21, 0, $m),
        ldrow!(), taps6!(20, 21, 1, $m), taps6!(22, 23, 0, $m),
        ldrow!(), taps6!(20, 21, 2, $m), taps6!(22, 23, 1, $m), taps6!(24, 25, 0, $m),
        ldrow!(), taps6!(22, 23, 2, $m), taps6!(24, 25, 1, $m),
        ldrow!(), taps6!(24, 25, 2, $m),
    ) };
    (4, $m:literal) => { concat!(
        ldrow!(), taps6!(20, 21, 0, $m),
        ldrow!(), taps6!(20, 21, 1, $m), taps6!(22, 23, 0, $m),
        ldrow!(), taps6!(20, 21, 2, $m), taps6!(22, 23, 1, $m), taps6!(24, 25, 0, $m),
        ldrow!(), taps6!(22, 23, 2, $m), taps6!(24, 25, 1, $m), taps6!(26, 27, 0, $m),
        ldrow!(), taps6!(24, 25, 2, $m), taps6!(26, 27, 1, $m),
        ldrow!(), taps6!(26, 27, 2, $m),
    ) };
}

/// The asm loop over the planes with the per-plane body `$body`, the
/// accumulator pairs `$a $b`.
macro_rules! band {
    ($pl:expr, ($inw:expr, $outw:expr), $src:expr, $dst:expr, $relu:expr, [$(($a:literal, $b:literal)),*], $body:expr, $init:expr) => {
        asm!(
            "movi v19.4s, #0",
            "20:",
            "ld1 {{v0.4s, v1.4s}}, [{w}], #32",
            "ldr s2, [{w}], #4",
            "ld1r {{v3.4s}}, [{bias}], #4",
            $init,
            "mov {p}, {src}",
            $body,
            "tbz {f}, #0, 21f",
            $(fmax_pair!(19, $a, $b),)*
            "21:",
            "mov {d}, {dst}",
            $(st1_pair!("d", "outw", $a, $b),)*
            "add {src}, {src}, {ins}",
            "add {dst}, {dst}, {outs}",
            "subs {n}, {n}, #1",
            "b.ne 20b",
            w = inout(reg) $pl.w => _,
            bias = inout(reg) $pl.bias => _,
            src = inout(reg) $src => _,
            dst = inout(reg) $dst => _,
            n = inout(reg) $pl.n => _,
            ins = in(reg) 4 * $pl.in_stride,
            outs = in(reg) 4 * $pl.out_stride,
            inw = in(reg) 4 * $inw,
            outw = in(reg) 4 * $outw,
            f = in(reg) $relu as u64,
            p = out(reg) _,
            d = out(reg) _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            options(nostack),
        )
    };
}

/// Output columns `x0 .. x0 + 8` of the `B` output rows of every plane of `pl`,
/// whose windows start at input column `col = x0 - pad_left`.
///
/// # Safety
/// `B` is 1-4; `pl.n >= 1`; for every plane `i`, input rows `0 .. B + 2` (`in_w`
/// floats apart from `pl.src + i in_stride`) are readable at columns `col .. col
/// + 12`; output rows `0 .. B` (`out_w` apart from `pl.dst + i out_stride`) are
/// writable at columns `x0 .. x0 + 8`; `pl.w` holds `9 n` floats and `pl.bias` `n`
/// (all zero when `zero_bias`).
pub(super) unsafe fn body_pair<const B: usize>(
    pl: &Planes,
    (in_w, out_w): (usize, usize),
    (col, x0): (usize, usize),
    relu: bool,
    zero_bias: bool,
) {
    let src = pl.src.wrapping_add(col);
    let dst = pl.dst.wrapping_add(x0);
    // SAFETY: the caller's contract: per plane the program reads rows 0 .. B + 2
    // at columns col .. col + 12 (one `ld1` of 12 floats per row), the plane's 9
    // filter floats and its bias, and writes rows 0 .. B at columns x0 .. x0 + 8;
    // it declares every vector register it touches.
    unsafe {
        // Zero bias: the first products are `fmul`s and the accumulators need no
        // copy of the bias.
        macro_rules! run {
            ($b:tt, [$(($x:literal, $y:literal)),*]) => {
                if zero_bias {
                    band!(pl, (in_w, out_w), src, dst, relu, [$(($x, $y)),*], rows!($b, "fmul"), "")
                } else {
                    band!(
                        pl,
                        (in_w, out_w),
                        src,
                        dst,
                        relu,
                        [$(($x, $y)),*],
                        rows!($b, "fmla"),
                        concat!($(init!($x, $y)),*)
                    )
                }
            };
        }
        match B {
            1 => run!(1, [(20, 21)]),
            2 => run!(2, [(20, 21), (22, 23)]),
            3 => run!(3, [(20, 21), (22, 23), (24, 25)]),
            _ => run!(4, [(20, 21), (22, 23), (24, 25), (26, 27)]),
        }
    }
}

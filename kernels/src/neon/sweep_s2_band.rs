//! 3x3 stride-2 windows (depthwise convolution, max and average pooling) on the
//! row pipeline's short bands: `B` = 1-4 output rows from the `2 B + 1` input rows
//! under them, for a pair of body column steps, every plane of the call in one
//! inline-assembly loop.
//!
//! Per plane: the filter (`ld1` of taps 0-7, `ldr` of tap 8; convolution only),
//! then per input row four `ld2` through one cursor post-indexed by registers
//! (each step's even and odd columns at its window start, and the odd columns one
//! column on: taps `dx = 0, 1, 2`), and per output row the input row feeds three
//! lane FMAs per step (convolution) or a reduction of the three taps folded in
//! (pools); one `st1` per step and output row. A contiguous pair (step 1 eight
//! columns after step 0, every pair but a row's overlapping tail) loads a row
//! with one `ld4`, one `ldr` and one `ext` instead, and stores an output row with
//! one `st2` (`ldrow4!`). The last row's load and store step the cursors on to
//! the next plane, so a plane costs no pointer arithmetic.
//!
//! The general sweep ([`super::sweep_s2`]) pays about 70 instructions of set-up
//! per plane and column pair around a loop that, on a band of one or two output
//! rows, runs once or twice (0.5x g=3 at 720x1280: 9M of its 14M instructions).
//!
//! Sums are formed in the general sweep's order (an output starts at its first
//! row, the bias first; rows add in order, taps `dx = 0, 1, 2`): results are
//! bit-identical to it.

use super::common::{fm, fmax_pair};
use super::sweep_s2::Planes;
use core::arch::aarch64::vdupq_n_f32;
use core::arch::asm;

/// What a band computes per window.
#[derive(Clone, Copy)]
pub(crate) enum BandOp {
    /// Depthwise convolution: plane `i` uses the 9 filter taps at `w + 9 i` and
    /// the bias `bias[i]` (not read when `zero_bias`), then ReLU when `relu`.
    Conv {
        /// Filter of plane 0.
        w: *const f32,
        /// Bias of plane 0.
        bias: *const f32,
        /// Every bias of the call is zero: outputs start with an `fmul`.
        zero_bias: bool,
        /// Clamp at zero after the bias.
        relu: bool,
    },
    /// Max pooling, clamped at zero when `relu`.
    Max {
        /// The ReLU behind the pool ([`crate::Pool::relu`]).
        relu: bool,
    },
    /// Average pooling with one divisor for every window: the sum times `f32`.
    Avg(f32),
}

/// Loads one input row's taps of both steps: step 0 in `v4 v5 v7`, step 1 in
/// `v16 v17 v19` (`v6`, `v18` are the unused even lanes of the loads one column
/// on). The cursor ends at the window start of the next row (`{dn}`) or, after
/// the band's last row, of the next plane (`{dp}`).
macro_rules! ldrow {
    ($next:literal) => {
        concat!(
            "ld2 {{v4.4s, v5.4s}}, [{p}], {d1}\n",
            "ld2 {{v16.4s, v17.4s}}, [{p}], {d2}\n",
            "ld2 {{v6.4s, v7.4s}}, [{p}], {d1}\n",
            "ld2 {{v18.4s, v19.4s}}, [{p}], {",
            $next,
            "}\n",
        )
    };
}

/// Loads one input row's taps for a contiguous pair (step 1 eight columns after
/// step 0): an `ld4` of the 16 columns from the window start deinterleaves them
/// by four, so the even outputs of the pair (windows at columns `4 i`) take taps
/// `v4 v5 v6` and the odd ones (windows at `4 i + 2`) `v6 v7 v17`, `v17` being
/// `v4` one lane on with column 16 (`ldr` into `v16`) shifted in. The cursor
/// moves on by `{dn}` or `{dp}` as in [`ldrow!`] (from the same column).
macro_rules! ldrow4 {
    ($next:literal) => {
        concat!(
            "ldr s16, [{p}, #64]\n",
            "ld4 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{p}], {",
            $next,
            "}\n",
            "ext v17.16b, v4.16b, v16.16b, #4\n",
        )
    };
}

/// The three taps `v$x0 v$x1 v$x2` of one step times filter row `dy` into `v$acc`
/// (filter tap `3 dy + dx` is lane `(3 dy + dx) % 4` of `v((3 dy + dx) / 4)`);
/// the first product is `$m`.
macro_rules! conv3 {
    ($m:literal, $acc:literal, [$x0:literal $x1:literal $x2:literal], 0) => {
        concat!(
            fm!($m, $acc, $x0, 0, 0),
            fm!("fmla", $acc, $x1, 0, 1),
            fm!("fmla", $acc, $x2, 0, 2)
        )
    };
    ($m:literal, $acc:literal, [$x0:literal $x1:literal $x2:literal], 1) => {
        concat!(
            fm!($m, $acc, $x0, 0, 3),
            fm!("fmla", $acc, $x1, 1, 0),
            fm!("fmla", $acc, $x2, 1, 1)
        )
    };
    ($m:literal, $acc:literal, [$x0:literal $x1:literal $x2:literal], 2) => {
        concat!(
            fm!($m, $acc, $x0, 1, 2),
            fm!("fmla", $acc, $x1, 1, 3),
            fm!("fmla", $acc, $x2, 2, 0)
        )
    };
}

/// `v$d = $i(v$a, v$b)` on four lanes.
macro_rules! op3 {
    ($i:literal, $d:literal, $a:literal, $b:literal) => {
        concat!($i, " v", $d, ".4s, v", $a, ".4s, v", $b, ".4s\n")
    };
}

/// The row's taps reduced by `$i` (`fmax`, `fadd`) into `v$a` (step 0, taps
/// `$t0`) and `v$b` (step 1, taps `$t1`), as `(dx0 . dx1) . dx2`.
macro_rules! red {
    ($i:literal, $a:literal, $b:literal, [$x0:literal $x1:literal $x2:literal],
     [$y0:literal $y1:literal $y2:literal]) => {
        concat!(
            op3!($i, $a, $x0, $x1),
            op3!($i, $a, $a, $x2),
            op3!($i, $b, $y0, $y1),
            op3!($i, $b, $b, $y2)
        )
    };
}

/// An output row's first input row into the accumulator pair `v$a`, `v$b`.
/// `mul`: zero-bias convolution (`fmul` first); `bias`: from the bias in `v3`.
macro_rules! first {
    (mul, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        concat!(conv3!("fmul", $a, $t0, 0), conv3!("fmul", $b, $t1, 0))
    };
    (bias, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        concat!(
            "mov v",
            $a,
            ".16b, v3.16b\n",
            conv3!("fmla", $a, $t0, 0),
            "mov v",
            $b,
            ".16b, v3.16b\n",
            conv3!("fmla", $b, $t1, 0),
        )
    };
    (max, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        red!("fmax", $a, $b, $t0, $t1)
    };
    (avg, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        red!("fadd", $a, $b, $t0, $t1)
    };
}

/// Adds the row at window row `$dy` into the pair `v$a`, `v$b` (pools reduce it
/// in `v28`, `v29` first).
macro_rules! add {
    (max, $a:literal, $b:literal, $dy:tt, $t0:tt, $t1:tt) => {
        concat!(
            red!("fmax", 28, 29, $t0, $t1),
            op3!("fmax", $a, $a, 28),
            op3!("fmax", $b, $b, 29)
        )
    };
    (avg, $a:literal, $b:literal, $dy:tt, $t0:tt, $t1:tt) => {
        concat!(
            red!("fadd", 28, 29, $t0, $t1),
            op3!("fadd", $a, $a, 28),
            op3!("fadd", $b, $b, 29)
        )
    };
    ($conv:tt, $a:literal, $b:literal, $dy:tt, $t0:tt, $t1:tt) => {
        concat!(conv3!("fmla", $a, $t0, $dy), conv3!("fmla", $b, $t1, $dy))
    };
}

/// An even input row inside the band: window row 2 of the pair `v$pa`, `v$pb`,
/// window row 0 of `v$a`, `v$b` (pools reduce the row once, into the new pair).
macro_rules! even {
    (max, $pa:literal, $pb:literal, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        concat!(
            first!(max, $a, $b, $t0, $t1),
            op3!("fmax", $pa, $pa, $a),
            op3!("fmax", $pb, $pb, $b)
        )
    };
    (avg, $pa:literal, $pb:literal, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        concat!(
            first!(avg, $a, $b, $t0, $t1),
            op3!("fadd", $pa, $pa, $a),
            op3!("fadd", $pb, $pb, $b)
        )
    };
    ($conv:tt, $pa:literal, $pb:literal, $a:literal, $b:literal, $t0:tt, $t1:tt) => {
        concat!(
            add!($conv, $pa, $pb, 2, $t0, $t1),
            first!($conv, $a, $b, $t0, $t1)
        )
    };
}

/// The `2 B + 1` input rows of a band of `B` output rows (output row `y` in the
/// pair `v(20 + 2y)`, `v(21 + 2y)`), in order.
#[rustfmt::skip]
macro_rules! rows {
    ($op:tt, 1, $ld:ident, $t0:tt, $t1:tt) => { concat!(
        $ld!("dn"), first!($op, 20, 21, $t0, $t1),
        $ld!("dn"), add!($op, 20, 21, 1, $t0, $t1),
        $ld!("dp"), add!($op, 20, 21, 2, $t0, $t1),
    ) };
    ($op:tt, 2, $ld:ident, $t0:tt, $t1:tt) => { concat!(
        $ld!("dn"), first!($op, 20, 21, $t0, $t1),
        $ld!("dn"), add!($op, 20, 21, 1, $t0, $t1),
        $ld!("dn"), even!($op, 20, 21, 22, 23, $t0, $t1),
        $ld!("dn"), add!($op, 22, 23, 1, $t0, $t1),
        $ld!("dp"), add!($op, 22, 23, 2, $t0, $t1),
    ) };
    ($op:tt, 3, $ld:ident, $t0:tt, $t1:tt) => { concat!(
        $ld!("dn"), first!($op, 20, 21, $t0, $t1),
        $ld!("dn"), add!($op, 20, 21, 1, $t0, $t1),
        $ld!("dn"), even!($op, 20, 21, 22, 23, $t0, $t1),
        $ld!("dn"), add!($op, 22, 23, 1, $t0, $t1),
        $ld!("dn"), even!($op, 22, 23, 24, 25, $t0, $t1),
        $ld!("dn"), add!($op, 24, 25, 1, $t0, $t1),
        $ld!("dp"), add!($op, 24, 25, 2, $t0, $t1),
    ) };
    ($op:tt, 4, $ld:ident, $t0:tt, $t1:tt) => { concat!(
        $ld!("dn"), first!($op, 20, 21, $t0, $t1),
        $ld!("dn"), add!($op, 20, 21, 1, $t0, $t1),
        $ld!("dn"), even!($op, 20, 21, 22, 23, $t0, $t1),
        $ld!("dn"), add!($op, 22, 23, 1, $t0, $t1),
        $ld!("dn"), even!($op, 22, 23, 24, 25, $t0, $t1),
        $ld!("dn"), add!($op, 24, 25, 1, $t0, $t1),
        $ld!("dn"), even!($op, 24, 25, 26, 27, $t0, $t1),
        $ld!("dn"), add!($op, 26, 27, 1, $t0, $t1),
        $ld!("dp"), add!($op, 26, 27, 2, $t0, $t1),
    ) };
}

/// `$m!(a, b)` for the accumulator pair of each of the `B` output rows (`B`, or a
/// band shape whose first item is `B`).
macro_rules! pairs {
    (($b:tt, $($shape:tt)*), $m:ident) => {
        pairs!($b, $m)
    };
    (1, $m:ident) => {
        $m!(20, 21)
    };
    (2, $m:ident) => {
        concat!($m!(20, 21), $m!(22, 23))
    };
    (3, $m:ident) => {
        concat!($m!(20, 21), $m!(22, 23), $m!(24, 25))
    };
    (4, $m:ident) => {
        concat!($m!(20, 21), $m!(22, 23), $m!(24, 25), $m!(26, 27))
    };
}

/// Stores one output row's pair (step 0 at the cursor, step 1 `{so}` bytes on),
/// the cursor moving on to the next output row.
macro_rules! st_row {
    ($a:literal, $b:literal) => {
        concat!(
            "st1 {{v",
            $a,
            ".4s}}, [{o}], {so}\n",
            "st1 {{v",
            $b,
            ".4s}}, [{o}], {so2}\n",
        )
    };
}

/// As [`st_row!`] for the band's last row: the cursor moves on to the next plane.
macro_rules! st_last {
    ($a:literal, $b:literal) => {
        concat!(
            "st1 {{v",
            $a,
            ".4s}}, [{o}], {so}\n",
            "st1 {{v",
            $b,
            ".4s}}, [{o}], {sp}\n",
        )
    };
}

/// Stores of the `B` output rows.
macro_rules! stores {
    (1) => {
        st_last!(20, 21)
    };
    (2) => {
        concat!(st_row!(20, 21), st_last!(22, 23))
    };
    (3) => {
        concat!(st_row!(20, 21), st_row!(22, 23), st_last!(24, 25))
    };
    (4) => {
        concat!(
            st_row!(20, 21),
            st_row!(22, 23),
            st_row!(24, 25),
            st_last!(26, 27)
        )
    };
}

/// Stores one output row of a contiguous pair from its even (`v$a`) and odd
/// (`v$b`) outputs, interleaved by `st2`; the cursor moves on by `{$next}`.
macro_rules! st2_row {
    ($a:literal, $b:literal, $next:literal) => {
        concat!("st2 {{v", $a, ".4s, v", $b, ".4s}}, [{o}], {", $next, "}\n")
    };
}

/// Stores of the `B` output rows of a contiguous pair ([`st2_row!`]): each steps
/// on by `{so2}`, the last to the next plane (`{sp}`).
macro_rules! stores2 {
    (1) => {
        st2_row!(20, 21, "sp")
    };
    (2) => {
        concat!(st2_row!(20, 21, "so2"), st2_row!(22, 23, "sp"))
    };
    (3) => {
        concat!(
            st2_row!(20, 21, "so2"),
            st2_row!(22, 23, "so2"),
            st2_row!(24, 25, "sp")
        )
    };
    (4) => {
        concat!(
            st2_row!(20, 21, "so2"),
            st2_row!(22, 23, "so2"),
            st2_row!(24, 25, "so2"),
            st2_row!(26, 27, "sp")
        )
    };
}

/// ReLU of one pair against the zero in `v30`.
macro_rules! relu_pair {
    ($a:literal, $b:literal) => {
        fmax_pair!(30, $a, $b)
    };
}

/// The average pool's divisor (in `v3`) applied to one pair.
macro_rules! scale_pair {
    ($a:literal, $b:literal) => {
        concat!(op3!("fmul", $a, $a, 3), op3!("fmul", $b, $b, 3))
    };
}

/// The plane loop: `$pre` once, then per plane `$setup`, the rows of `$op`
/// (loaded by `$ld`, taps `$t0`, `$t1`), `$finish` and the stores (`$st`);
/// `$extra` are the operands beyond the cursors and offsets.
macro_rules! band {
    ($o:expr, ($b:tt, $ld:ident, $t0:tt, $t1:tt, $st:ident), $op:tt, $pre:expr, $setup:expr,
     $finish:expr, $($extra:tt)*) => {
        asm!(
            // Offsets a band of one row or a contiguous pair does not use.
            "// offsets: {d1} {d2} {so} {so2}",
            $pre,
            "20:",
            $setup,
            rows!($op, $b, $ld, $t0, $t1),
            $finish,
            $st!($b),
            "subs {n}, {n}, #1",
            "b.ne 20b",
            p = inout(reg) $o.src => _,
            o = inout(reg) $o.dst => _,
            n = inout(reg) $o.n => _,
            d1 = in(reg) $o.d1,
            d2 = in(reg) $o.d2,
            dn = in(reg) $o.dn,
            dp = in(reg) $o.dp,
            so = in(reg) $o.so,
            so2 = in(reg) $o.so2,
            sp = in(reg) $o.sp,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _,
            $($extra)*
            options(nostack),
        )
    };
}

/// Cursors and byte offsets of one band call.
struct Offsets {
    /// Input cursor: plane 0, row 0, step 0's window start.
    src: *const f32,
    /// Output cursor: plane 0, row 0, step 0's first column.
    dst: *mut f32,
    /// Planes.
    n: usize,
    /// Step 0's window to step 1's.
    d1: isize,
    /// Step 1's window to one column past step 0's.
    d2: isize,
    /// One column past step 1's window to the next row's step 0 window.
    dn: isize,
    /// As `dn`, from the band's last row to the next plane's row 0.
    dp: isize,
    /// Step 0's output to step 1's.
    so: isize,
    /// Step 1's output to the next output row's step 0.
    so2: isize,
    /// As `so2`, from the last output row to the next plane's row 0.
    sp: isize,
}

/// Output columns `x[k] .. x[k] + 4` (`k` = 0, 1) of the `B` output rows of every
/// plane of `pl`, whose windows start at input columns `cols[k]` (`cols[1] -
/// cols[0] = 2 (x[1] - x[0])`).
///
/// # Safety
/// `B` is 1-4; for every plane `i < pl.n`, input rows `0 .. 2 B + 1` (`pl.in_w`
/// floats apart from `pl.src + i pl.in_stride`) are readable at columns `cols[k]
/// .. cols[k] + 9`; output rows `0 .. B` (`pl.out_w` apart from `pl.dst + i
/// pl.out_stride`) are writable at columns `x[k] .. x[k] + 4`. For
/// [`BandOp::Conv`], `w` holds `9 pl.n` floats and (unless `zero_bias`) `bias`
/// `pl.n`.
pub(super) unsafe fn body_pair<const B: usize>(
    pl: &Planes,
    cols: [usize; 2],
    x: [usize; 2],
    op: BandOp,
) {
    if pl.n == 0 {
        return;
    }
    let (c, dx) = (
        cols[1] as isize - cols[0] as isize,
        x[1] as isize - x[0] as isize,
    );
    let (iw, ow) = (pl.in_w as isize, pl.out_w as isize);
    let rows = 2 * B as isize + 1;
    // A contiguous pair loads each row with one `ld4` and stores each output row
    // with one `st2`; its cursors step from the same column to the next row.
    let contiguous = dx == 4;
    let dn = if contiguous { 4 * iw } else { 4 * (iw - c - 1) };
    let (so2, sp_dx) = if contiguous {
        (4 * ow, 0)
    } else {
        (4 * (ow - dx), dx)
    };
    let o = Offsets {
        src: pl.src.wrapping_add(cols[0]),
        dst: pl.dst.wrapping_add(x[0]),
        n: pl.n,
        d1: 4 * c,
        d2: 4 * (1 - c),
        dn,
        dp: dn + 4 * (pl.in_stride as isize - rows * iw),
        so: 4 * dx,
        so2,
        sp: 4 * (pl.out_stride as isize - (B as isize - 1) * ow - sp_dx),
    };
    // SAFETY: the caller's contract: per plane the program reads rows 0 .. 2 B + 1
    // at columns cols[k] .. cols[k] + 9 (`ld2` of 8 floats at the window start and
    // one column on; for a contiguous pair `ld4` of columns cols[0] .. + 16 and
    // `ldr` of column cols[0] + 16 = cols[1] + 8), the plane's 9 filter floats and
    // its bias, and writes rows 0 .. B at columns x[k] .. x[k] + 4 (a contiguous
    // pair: x[0] .. x[0] + 8 by `st2`); the cursors step between those addresses
    // (the last steps land on the plane after the last, never read); it declares
    // every vector register it touches.
    unsafe {
        macro_rules! go {
            ($b:tt) => {
                if contiguous {
                    ops!(($b, ldrow4, [4 5 6], [6 7 17], stores2))
                } else {
                    ops!(($b, ldrow, [4 5 7], [16 17 19], stores))
                }
            };
        }
        macro_rules! ops {
            ($shape:tt) => {
                match op {
                    BandOp::Conv {
                        w, zero_bias: true, relu, ..
                    } => band!(
                        o, $shape, mul, "movi v30.4s, #0",
                        concat!("ld1 {{v0.4s, v1.4s}}, [{w}], #32\n", "ldr s2, [{w}], #4\n"),
                        concat!("tbz {f}, #0, 21f\n", pairs!($shape, relu_pair), "21:\n"),
                        w = inout(reg) w => _, f = in(reg) u64::from(relu),
                        out("v0") _, out("v1") _, out("v2") _, out("v30") _,
                    ),
                    BandOp::Conv {
                        w, bias, zero_bias: false, relu,
                    } => band!(
                        o, $shape, bias, "movi v30.4s, #0",
                        concat!(
                            "ld1 {{v0.4s, v1.4s}}, [{w}], #32\n",
                            "ldr s2, [{w}], #4\n",
                            "ld1r {{v3.4s}}, [{bias}], #4\n",
                        ),
                        concat!("tbz {f}, #0, 21f\n", pairs!($shape, relu_pair), "21:\n"),
                        w = inout(reg) w => _, bias = inout(reg) bias => _,
                        f = in(reg) u64::from(relu),
                        out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v30") _,
                    ),
                    BandOp::Max { relu: false } => band!(o, $shape, max, "", "", "",),
                    BandOp::Max { relu: true } => band!(
                        o, $shape, max, "movi v30.4s, #0", "", pairs!($shape, relu_pair),
                        out("v30") _,
                    ),
                    BandOp::Avg(f) => band!(
                        o, $shape, avg, "", "", pairs!($shape, scale_pair),
                        in("v3") vdupq_n_f32(f),
                    ),
                }
            };
        }
        match B {
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            _ => go!(4),
        }
    }
}

//! 3x3 depthwise convolution, stride 1, on the row pipeline's short bands: `B` =
//! 1-4 output rows from the `B + 2` input rows around them, for a pair of body
//! column steps (8 output columns whose windows lie inside the row), every plane
//! of the call in one inline-assembly loop.
//!
//! Per plane: the filter (`ld1` of taps 0-7, `ldr` of tap 8), with a non-zero bias
//! the bias (`ld1r`) and one `mov` per accumulator; then per input row three
//! two-register `ld1` through one cursor post-indexed by registers (columns from
//! the window start and one and two columns on: taps `dx = 0, 1, 2` of both
//! steps), and six lane FMAs per output row the input row feeds; one `st1` of
//! two vectors per output row. The last row's load and store step the cursors on
//! to the next plane, so a plane costs no pointer arithmetic. At `B = 2` a plane
//! takes 55 instructions with a zero bias: the intrinsics sweep took 98, the first
//! version of this loop (one load and four `ext` per row, cursors copied and
//! stepped per plane) 68.
//!
//! Each accumulator starts from the bias (or, with a zero bias, from its first
//! product: an `fmul`, no `mov`) and adds its input rows in order, three taps
//! each, as the general sweep does: results are bit-identical to it.

use super::common::{fm, fmax_pair, st1_pair};
use super::dwconv3x3_s1::Planes;
use core::arch::asm;

/// The six FMAs of one input row into the output row held in `v$a` (step 0,
/// taps `v4 v6 v16`) and `v$b` (step 1, taps `v5 v7 v17`), at filter row `dy`
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
            fm!("fmla", $a, 6, $w1, $l1),
            fm!("fmla", $a, 16, $w2, $l2),
            fm!($m, $b, 5, $w0, $l0),
            fm!("fmla", $b, 7, $w1, $l1),
            fm!("fmla", $b, 17, $w2, $l2),
        )
    };
}

/// Loads the next input row's taps of both steps: columns from the window start
/// (`v4`, `v5`), one on (`v6`, `v7`) and two on (`v16`, `v17`). The cursor ends at
/// the window start of the next row (`{dn}`) or, after the band's last row, of the
/// next plane (`{dp}`).
macro_rules! ldrow {
    ($next:literal) => {
        concat!(
            "ld1 {{v4.4s, v5.4s}}, [{p}], {one}\n",
            "ld1 {{v6.4s, v7.4s}}, [{p}], {one}\n",
            "ld1 {{v16.4s, v17.4s}}, [{p}], {",
            $next,
            "}\n",
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
        ldrow!("dn"), taps6!(20, 21, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 1, $m),
        ldrow!("dp"), taps6!(20, 21, 2, $m),
    ) };
    (2, $m:literal) => { concat!(
        ldrow!("dn"), taps6!(20, 21, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 1, $m), taps6!(22, 23, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 2, $m), taps6!(22, 23, 1, $m),
        ldrow!("dp"), taps6!(22, 23, 2, $m),
    ) };
    (3, $m:literal) => { concat!(
        ldrow!("dn"), taps6!(20, 21, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 1, $m), taps6!(22, 23, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 2, $m), taps6!(22, 23, 1, $m), taps6!(24, 25, 0, $m),
        ldrow!("dn"), taps6!(22, 23, 2, $m), taps6!(24, 25, 1, $m),
        ldrow!("dp"), taps6!(24, 25, 2, $m),
    ) };
    (4, $m:literal) => { concat!(
        ldrow!("dn"), taps6!(20, 21, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 1, $m), taps6!(22, 23, 0, $m),
        ldrow!("dn"), taps6!(20, 21, 2, $m), taps6!(22, 23, 1, $m), taps6!(24, 25, 0, $m),
        ldrow!("dn"), taps6!(22, 23, 2, $m), taps6!(24, 25, 1, $m), taps6!(26, 27, 0, $m),
        ldrow!("dn"), taps6!(24, 25, 2, $m), taps6!(26, 27, 1, $m),
        ldrow!("dp"), taps6!(26, 27, 2, $m),
    ) };
}

/// Stores of the `B` output rows (pairs `v20 v21 ..`), each post-indexed by the
/// output row (`{outw}`), the last by the step to the next plane (`{op}`).
macro_rules! stores {
    (1) => {
        st1_pair!("d", "op", 20, 21)
    };
    (2) => {
        concat!(st1_pair!("d", "outw", 20, 21), st1_pair!("d", "op", 22, 23))
    };
    (3) => {
        concat!(
            st1_pair!("d", "outw", 20, 21),
            st1_pair!("d", "outw", 22, 23),
            st1_pair!("d", "op", 24, 25),
        )
    };
    (4) => {
        concat!(
            st1_pair!("d", "outw", 20, 21),
            st1_pair!("d", "outw", 22, 23),
            st1_pair!("d", "outw", 24, 25),
            st1_pair!("d", "op", 26, 27),
        )
    };
}

/// The asm loop over the planes of band height `$b` with the accumulator pairs
/// `$a $b`: `$setup` (the bias) and `$init` (the accumulators' copies of it)
/// per plane before the rows, whose first products are `$m`.
macro_rules! band {
    ($c:expr, $h:tt, [$(($a:literal, $b:literal)),*], $m:literal, $setup:expr, $init:expr, $($extra:tt)*) => {
        asm!(
            "// output row step: {outw}",
            "movi v19.4s, #0",
            "20:",
            "ld1 {{v0.4s, v1.4s}}, [{w}], #32",
            "ldr s2, [{w}], #4",
            $setup,
            $init,
            rows!($h, $m),
            "tbz {f}, #0, 21f",
            $(fmax_pair!(19, $a, $b),)*
            "21:",
            stores!($h),
            "subs {n}, {n}, #1",
            "b.ne 20b",
            w = inout(reg) $c.w => _,
            p = inout(reg) $c.src => _,
            d = inout(reg) $c.dst => _,
            n = inout(reg) $c.n => _,
            one = in(reg) 4usize,
            dn = in(reg) $c.dn,
            dp = in(reg) $c.dp,
            outw = in(reg) $c.outw,
            op = in(reg) $c.op,
            f = in(reg) u64::from($c.relu),
            out("v0") _, out("v1") _, out("v2") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v16") _, out("v17") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            $($extra)*
            options(nostack),
        )
    };
}

/// Cursors and byte offsets of one band call.
struct Cursors {
    /// Filter of plane 0.
    w: *const f32,
    /// Input cursor: plane 0, row 0, the window start.
    src: *const f32,
    /// Output cursor: plane 0, row 0, the first column.
    dst: *mut f32,
    /// Planes.
    n: usize,
    /// Two columns past the window start to the next row's window start.
    dn: isize,
    /// As `dn`, from the band's last input row to the next plane's row 0.
    dp: isize,
    /// One output row.
    outw: isize,
    /// The last output row to the next plane's row 0.
    op: isize,
    /// Clamp at zero.
    relu: bool,
}

/// The cursors and offsets of a band of `B` rows whose windows start at column
/// `col`, output from column `x0`.
fn cursors<const B: usize>(
    pl: &Planes,
    (in_w, out_w): (usize, usize),
    (col, x0): (usize, usize),
    relu: bool,
) -> Cursors {
    let (iw, ow, b) = (in_w as isize, out_w as isize, B as isize);
    let dn = 4 * (iw - 2);
    Cursors {
        w: pl.w,
        src: pl.src.wrapping_add(col),
        dst: pl.dst.wrapping_add(x0),
        n: pl.n,
        dn,
        dp: dn + 4 * (pl.in_stride as isize - (b + 2) * iw),
        outw: 4 * ow,
        op: 4 * (pl.out_stride as isize - (b - 1) * ow),
        relu,
    }
}

/// Output columns `x0 .. x0 + 8` of the `B` output rows of every plane of `pl`,
/// whose windows start at input column `col = x0 - pad_left`.
///
/// # Safety
/// `B` is 1-4; `pl.n >= 1`; for every plane `i`, input rows `0 .. B + 2` (`in_w`
/// floats apart from `pl.src + i in_stride`) are readable at columns `col .. col
/// + 10`; output rows `0 .. B` (`out_w` apart from `pl.dst + i out_stride`) are
/// writable at columns `x0 .. x0 + 8`; `pl.w` holds `9 n` floats and `pl.bias` `n`
/// (all zero when `zero_bias`).
pub(super) unsafe fn body_pair<const B: usize>(
    pl: &Planes,
    (in_w, out_w): (usize, usize),
    (col, x0): (usize, usize),
    relu: bool,
    zero_bias: bool,
) {
    let c = cursors::<B>(pl, (in_w, out_w), (col, x0), relu);
    // SAFETY: the caller's contract: per plane the program reads rows 0 .. B + 2
    // at columns col .. col + 10 (two-register `ld1` at the window start and one
    // and two columns on), the plane's 9 filter floats and (unless `zero_bias`)
    // its bias, and writes rows 0 .. B at columns x0 .. x0 + 8; the cursors step
    // between those addresses (the last steps land on the plane after the last,
    // never read); it declares every vector register it touches.
    unsafe {
        // Zero bias: the first products are `fmul`s; the bias is neither loaded
        // nor copied into the accumulators.
        macro_rules! run {
            ($h:tt, [$(($x:literal, $y:literal)),*]) => {
                if zero_bias {
                    band!(c, $h, [$(($x, $y)),*], "fmul", "", "",)
                } else {
                    band!(
                        c,
                        $h,
                        [$(($x, $y)),*],
                        "fmla",
                        "ld1r {{v3.4s}}, [{bias}], #4",
                        concat!($(init!($x, $y)),*),
                        bias = inout(reg) pl.bias => _,
                        out("v3") _,
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

/// The twelve FMAs of one input row into the output row held in `v$a ..= v$d`
/// (four body steps, 16 columns; taps `dx = 0, 1, 2` of step `k` in `v(4 + k)`,
/// `v(16 + k)`, `v(20 + k)`), at filter row `dy` (lanes as in [`taps6!`]).
macro_rules! taps12 {
    ($a:literal $b:literal $c:literal $d:literal, 0, $m0:literal) => {
        taps12!(@ $a $b $c $d, $m0, 0 0, 0 1, 0 2)
    };
    ($a:literal $b:literal $c:literal $d:literal, 1, $m0:literal) => {
        taps12!(@ $a $b $c $d, "fmla", 0 3, 1 0, 1 1)
    };
    ($a:literal $b:literal $c:literal $d:literal, 2, $m0:literal) => {
        taps12!(@ $a $b $c $d, "fmla", 1 2, 1 3, 2 0)
    };
    (@ $a:literal $b:literal $c:literal $d:literal, $m:literal, $w0:literal $l0:literal,
     $w1:literal $l1:literal, $w2:literal $l2:literal) => {
        concat!(
            fm!($m, $a, 4, $w0, $l0), fm!("fmla", $a, 16, $w1, $l1), fm!("fmla", $a, 20, $w2, $l2),
            fm!($m, $b, 5, $w0, $l0), fm!("fmla", $b, 17, $w1, $l1), fm!("fmla", $b, 21, $w2, $l2),
            fm!($m, $c, 6, $w0, $l0), fm!("fmla", $c, 18, $w1, $l1), fm!("fmla", $c, 22, $w2, $l2),
            fm!($m, $d, 7, $w0, $l0), fm!("fmla", $d, 19, $w1, $l1), fm!("fmla", $d, 23, $w2, $l2),
        )
    };
}

/// Loads the next input row's taps of four steps: 16 columns from the window
/// start (`v4 ..= v7`), one on (`v16 ..= v19`) and two on (`v20 ..= v23`); the
/// cursor moves on as in [`ldrow!`].
macro_rules! ldrow4 {
    ($next:literal) => {
        concat!(
            "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{p}], {one}\n",
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{p}], {one}\n",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{p}], {",
            $next,
            "}\n",
        )
    };
}

/// The input rows of a band of `B` output rows over four steps (output row 0 in
/// `v24 ..= v27`, row 1 in `v28 ..= v31`, row 2 in `v8 ..= v11`, row 3 in `v12
/// ..= v15`), then their stores.
#[rustfmt::skip]
macro_rules! rows4 {
    (1, $m:literal) => { concat!(
        ldrow4!("dn"), taps12!(24 25 26 27, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 1, $m),
        ldrow4!("dp"), taps12!(24 25 26 27, 2, $m),
        "st1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{d}], {op}\n",
    ) };
    (2, $m:literal) => { concat!(
        ldrow4!("dn"), taps12!(24 25 26 27, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 1, $m), taps12!(28 29 30 31, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 2, $m), taps12!(28 29 30 31, 1, $m),
        ldrow4!("dp"), taps12!(28 29 30 31, 2, $m),
        "st1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{d}], {outw}\n",
        "st1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{d}], {op}\n",
    ) };
    (3, $m:literal) => { concat!(
        ldrow4!("dn"), taps12!(24 25 26 27, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 1, $m), taps12!(28 29 30 31, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 2, $m), taps12!(28 29 30 31, 1, $m),
        taps12!(8 9 10 11, 0, $m),
        ldrow4!("dn"), taps12!(28 29 30 31, 2, $m), taps12!(8 9 10 11, 1, $m),
        ldrow4!("dp"), taps12!(8 9 10 11, 2, $m),
        "st1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{d}], {outw}\n",
        "st1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{d}], {outw}\n",
        "st1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{d}], {op}\n",
    ) };
    (4, $m:literal) => { concat!(
        ldrow4!("dn"), taps12!(24 25 26 27, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 1, $m), taps12!(28 29 30 31, 0, $m),
        ldrow4!("dn"), taps12!(24 25 26 27, 2, $m), taps12!(28 29 30 31, 1, $m),
        taps12!(8 9 10 11, 0, $m),
        ldrow4!("dn"), taps12!(28 29 30 31, 2, $m), taps12!(8 9 10 11, 1, $m),
        taps12!(12 13 14 15, 0, $m),
        ldrow4!("dn"), taps12!(8 9 10 11, 2, $m), taps12!(12 13 14 15, 1, $m),
        ldrow4!("dp"), taps12!(12 13 14 15, 2, $m),
        "st1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{d}], {outw}\n",
        "st1 {{v28.4s, v29.4s, v30.4s, v31.4s}}, [{d}], {outw}\n",
        "st1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{d}], {outw}\n",
        "st1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{d}], {op}\n",
    ) };
}

/// Bias into the accumulators `v$a ..= v$d`.
macro_rules! init4 {
    ($a:literal $b:literal $c:literal $d:literal) => {
        concat!(init!($a, $b), init!($c, $d))
    };
}

/// The asm loop over the planes for four steps: per plane the filter, `$setup`
/// and `$init` (the bias, with a non-zero bias), the rows and the stores.
macro_rules! band4 {
    ($c:expr, $h:tt, $m:literal, $setup:expr, $init:expr, $($extra:tt)*) => {
        asm!(
            "// output row step: {outw}",
            "20:",
            "ld1 {{v0.4s, v1.4s}}, [{w}], #32",
            "ldr s2, [{w}], #4",
            $setup,
            $init,
            rows4!($h, $m),
            "subs {n}, {n}, #1",
            "b.ne 20b",
            w = inout(reg) $c.w => _,
            p = inout(reg) $c.src => _,
            d = inout(reg) $c.dst => _,
            n = inout(reg) $c.n => _,
            one = in(reg) 4usize,
            dn = in(reg) $c.dn,
            dp = in(reg) $c.dp,
            outw = in(reg) $c.outw,
            op = in(reg) $c.op,
            out("v0") _, out("v1") _, out("v2") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            out("v28") _, out("v29") _, out("v30") _, out("v31") _,
            $($extra)*
            options(nostack),
        )
    };
}

/// Output columns `x0 .. x0 + 16` (four body steps) of the `B` output rows of
/// every plane of `pl`, whose windows start at input column `col = x0 -
/// pad_left`, without ReLU: [`body_pair`]'s loop on twice the columns. At `B =
/// 4` every vector register is taken, so a ReLU band (ShuffleNet's depthwise convs
/// have none) runs in pairs. Per plane with a zero bias: 93 instructions for 32
/// outputs at `B = 2` (110 in two pairs), 170 for 64 at `B = 4` (198).
///
/// # Safety
/// As for [`body_pair`], with input columns `col .. col + 18` and output columns
/// `x0 .. x0 + 16`.
pub(super) unsafe fn body_quad<const B: usize>(
    pl: &Planes,
    (in_w, out_w): (usize, usize),
    (col, x0): (usize, usize),
    zero_bias: bool,
) {
    let c = cursors::<B>(pl, (in_w, out_w), (col, x0), false);
    // SAFETY: the caller's contract: per plane the program reads rows 0 .. B + 2
    // at columns col .. col + 18 (four-register `ld1` at the window start and one
    // and two columns on), the plane's 9 filter floats and (unless `zero_bias`)
    // its bias, and writes rows 0 .. B at columns x0 .. x0 + 16; the cursors step
    // between those addresses (the last steps land on the plane after the last,
    // never read); it declares every vector register it touches.
    unsafe {
        macro_rules! run {
            ($h:tt, $init:expr) => {
                if zero_bias {
                    band4!(c, $h, "fmul", "", "",)
                } else {
                    band4!(
                        c, $h, "fmla", "ld1r {{v3.4s}}, [{bias}], #4", $init,
                        bias = inout(reg) pl.bias => _, out("v3") _,
                    )
                }
            };
        }
        match B {
            1 => run!(1, init4!(24 25 26 27)),
            2 => run!(2, concat!(init4!(24 25 26 27), init4!(28 29 30 31))),
            3 => run!(
                3,
                concat!(init4!(24 25 26 27), init4!(28 29 30 31), init4!(8 9 10 11))
            ),
            _ => run!(
                4,
                concat!(
                    init4!(24 25 26 27),
                    init4!(28 29 30 31),
                    init4!(8 9 10 11),
                    init4!(12 13 14 15)
                )
            ),
        }
    }
}

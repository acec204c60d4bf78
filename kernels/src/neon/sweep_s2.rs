//! Column sweeps of 3x3 stride-2 windows over planes, shared by the stride-2
//! depthwise convolution and the 3x3 stride-2 pools.
//!
//! A plane's output columns are covered by 4-wide column steps ([`RowPlan`]),
//! swept in pairs: each sweep walks down every plane once, visiting every input
//! row once. Inside the row a step's three taps (columns `2x - pad_left + dx`)
//! come from two `ld2` (even and odd columns at the window start, odd columns one
//! later), and so does a row's overlapping last step when its window fits; border
//! steps gather them with `tbl` (or `tbx` with a fill value) from four vectors
//! loaded inside the row. Output row `y` reads input rows
//! `2y - pad_top + dy`: an input row with even `r + pad_top` completes the pending
//! output (`dy = 2`) and starts the next (`dy = 0`), an odd one adds `dy = 1`; rows
//! above and below the plane are padding and are never visited, so the loops have
//! no bounds branches. The plane loop sits inside the step loop so the steps'
//! setup (offsets, gather indices) is paid once per call.

use super::common::{table4, RowPlan};
use super::sweep_s2_band::{body_pair, BandOp};
use core::arch::aarch64::*;
use core::arch::asm;

/// The three taps of consecutive input rows for one column step, read through a
/// cursor that walks down the plane (so loads can post-increment their address).
pub(crate) trait Taps: Copy {
    /// Cursor state.
    type Cur: Copy;
    /// A cursor at the row starting at `row`.
    ///
    /// # Safety
    /// `row` is a row of the plane.
    unsafe fn cursor(self, row: *const f32) -> Self::Cur;
    /// Taps of the cursor's row; moves the cursor `in_w` floats down.
    ///
    /// # Safety
    /// The cursor is at a row of the plane; the step's loads must be inside the
    /// row (guaranteed by [`RowPlan`]).
    unsafe fn next(self, cur: &mut Self::Cur, in_w: usize) -> [float32x4_t; 3];
}

/// Column step inside the row: the window starts at column `col`, and columns
/// `col .. col + 9` are inside the row. Taps `dx = 0, 1` are the even and odd
/// lanes of an `ld2` at `col`, tap `dx = 2` the odd lanes of one at `col + 1`
/// (an `ld2` at `col + 2` would read one column more, which keeps the row's last
/// step out of the body when the input width is even).
#[derive(Clone, Copy)]
pub(crate) struct Body {
    col: usize,
}

impl Taps for Body {
    type Cur = [*const f32; 2];
    #[inline(always)]
    unsafe fn cursor(self, row: *const f32) -> [*const f32; 2] {
        // SAFETY: columns col and col + 1 are inside the row.
        unsafe { [row.add(self.col), row.add(self.col + 1)] }
    }
    #[inline(always)]
    unsafe fn next(self, cur: &mut [*const f32; 2], in_w: usize) -> [float32x4_t; 3] {
        // SAFETY: reads columns col .. col + 9 of the cursor's row (body
        // condition); the cursor moves to the next row with wrapping arithmetic
        // (it is only dereferenced at rows of the plane); the asm is empty.
        unsafe {
            let a = vld2q_f32(cur[0]);
            let b = vld2q_f32(cur[1]);
            cur[0] = cur[0].wrapping_add(in_w);
            cur[1] = cur[1].wrapping_add(in_w);
            // Keep each cursor its own register, so the moves fold into the
            // loads (`ld2 .., [x], x_in_w`) instead of one shared offset plus an
            // address add per load.
            asm!(
                "/* {0} {1} */",
                inout(reg) cur[0],
                inout(reg) cur[1],
                options(readonly, nostack, preserves_flags)
            );
            [a.0, a.1, b.1]
        }
    }
}

/// Loads the four table vectors of a border step.
///
/// # Safety
/// `row + offs[k] .. + 4` must be readable.
#[inline(always)]
unsafe fn edge_table(row: *const f32, offs: &[usize; 4]) -> uint8x16x4_t {
    // SAFETY: caller's contract.
    unsafe {
        table4(
            vld1q_f32(row.add(offs[0])),
            vld1q_f32(row.add(offs[1])),
            vld1q_f32(row.add(offs[2])),
            vld1q_f32(row.add(offs[3])),
        )
    }
}

/// Gathers one tap; with `FILL`, padding lanes take `fill` (`tbx`), else zero.
#[inline(always)]
fn gather<const FILL: bool>(tab: uint8x16x4_t, ix: uint8x16_t, fill: uint8x16_t) -> float32x4_t {
    // SAFETY: register-only table lookups.
    unsafe {
        vreinterpretq_f32_u8(if FILL {
            vqtbx4q_u8(fill, tab, ix)
        } else {
            vqtbl4q_u8(tab, ix)
        })
    }
}

/// Border column step: taps gathered from the four vectors at columns `offs`.
#[derive(Clone, Copy)]
pub(crate) struct Edge<const FILL: bool> {
    offs: [usize; 4],
    idx: [uint8x16_t; 3],
    fill: uint8x16_t,
}

impl<const FILL: bool> Taps for Edge<FILL> {
    type Cur = *const f32;
    #[inline(always)]
    unsafe fn cursor(self, row: *const f32) -> *const f32 {
        row
    }
    #[inline(always)]
    unsafe fn next(self, cur: &mut *const f32, in_w: usize) -> [float32x4_t; 3] {
        // SAFETY: the plan put the four loads inside the row.
        let tab = unsafe { edge_table(*cur, &self.offs) };
        *cur = cur.wrapping_add(in_w);
        self.idx.map(|ix| gather::<FILL>(tab, ix, self.fill))
    }
}

/// Left border step of a row with one column of padding on the left (output
/// columns 0 .. 4, windows from column -1): taps `dx = 1, 2` are the even and odd
/// lanes of an `ld2` at column 0, tap `dx = 0` the odd lanes shifted one lane up
/// behind the padding value (`ext`), where [`Edge`] loads four vectors and
/// gathers all three taps with `tbl` (three index vectors held in registers).
#[derive(Clone, Copy)]
pub(crate) struct LeftEdge {
    /// The padding value: the fill with `FILL`, else zero.
    pad: float32x4_t,
}

impl Taps for LeftEdge {
    type Cur = *const f32;
    #[inline(always)]
    unsafe fn cursor(self, row: *const f32) -> *const f32 {
        row
    }
    #[inline(always)]
    unsafe fn next(self, cur: &mut *const f32, in_w: usize) -> [float32x4_t; 3] {
        // SAFETY: reads columns 0 .. 8 of the cursor's row (at least 8 wide).
        let a = unsafe { vld2q_f32(*cur) };
        *cur = cur.wrapping_add(in_w);
        // SAFETY: register-only lane shift.
        [unsafe { vextq_f32::<3>(self.pad, a.1) }, a.0, a.1]
    }
}

/// The column steps one sweep computes together (one or two).
pub(crate) trait Steps<const N: usize>: Copy {
    /// Cursor state.
    type Cur: Copy;
    /// Cursors at the row starting at `row`.
    ///
    /// # Safety
    /// As for [`Taps::cursor`].
    unsafe fn cursor(self, row: *const f32) -> Self::Cur;
    /// Taps of every step for the cursor's row; moves the cursor down a row.
    ///
    /// # Safety
    /// As for [`Taps::next`].
    unsafe fn next(self, cur: &mut Self::Cur, in_w: usize) -> [[float32x4_t; 3]; N];
}

impl<A: Taps> Steps<1> for (A,) {
    type Cur = A::Cur;
    #[inline(always)]
    unsafe fn cursor(self, row: *const f32) -> A::Cur {
        // SAFETY: forwarded contract.
        unsafe { self.0.cursor(row) }
    }
    #[inline(always)]
    unsafe fn next(self, cur: &mut A::Cur, in_w: usize) -> [[float32x4_t; 3]; 1] {
        // SAFETY: forwarded contract.
        unsafe { [self.0.next(cur, in_w)] }
    }
}

impl<A: Taps, B: Taps> Steps<2> for (A, B) {
    type Cur = (A::Cur, B::Cur);
    #[inline(always)]
    unsafe fn cursor(self, row: *const f32) -> (A::Cur, B::Cur) {
        // SAFETY: forwarded contract.
        unsafe { (self.0.cursor(row), self.1.cursor(row)) }
    }
    #[inline(always)]
    unsafe fn next(self, cur: &mut (A::Cur, B::Cur), in_w: usize) -> [[float32x4_t; 3]; 2] {
        // SAFETY: forwarded contract.
        unsafe { [self.0.next(&mut cur.0, in_w), self.1.next(&mut cur.1, in_w)] }
    }
}

/// Two border steps gathering from the same four vectors (narrow rows): one set
/// of loads, six lookups.
#[derive(Clone, Copy)]
struct EdgePair<const FILL: bool> {
    offs: [usize; 4],
    idx: [[uint8x16_t; 3]; 2],
    fill: uint8x16_t,
}

impl<const FILL: bool> Steps<2> for EdgePair<FILL> {
    type Cur = *const f32;
    #[inline(always)]
    unsafe fn cursor(self, row: *const f32) -> *const f32 {
        row
    }
    #[inline(always)]
    unsafe fn next(self, cur: &mut *const f32, in_w: usize) -> [[float32x4_t; 3]; 2] {
        // SAFETY: the plan put the four loads inside the row.
        let tab = unsafe { edge_table(*cur, &self.offs) };
        *cur = cur.wrapping_add(in_w);
        self.idx
            .map(|idx| idx.map(|ix| gather::<FILL>(tab, ix, self.fill)))
    }
}

/// What a window computes: per input row a reduction of its three taps, per
/// output a fold of its three rows, then a final transform.
pub(crate) trait Op: Copy {
    /// The per-row reduction of the taps.
    type Row: Copy;
    /// Reduces one input row's taps.
    fn reduce(self, t: &[float32x4_t; 3]) -> Self::Row;
    /// Value of an output before any row (bias, -inf, 0).
    fn init(self) -> float32x4_t;
    /// Folds the row at window row `dy` into `acc`.
    fn add(self, acc: float32x4_t, row: &Self::Row, dy: usize) -> float32x4_t;
    /// An output's first row, `add(init(), row, dy)` (an override skips the
    /// initial value where that is exact).
    #[inline(always)]
    fn start(self, row: &Self::Row, dy: usize) -> float32x4_t {
        self.add(self.init(), row, dy)
    }
    /// The value stored for output row `y` of column step `k` of the sweep.
    fn finish(self, v: float32x4_t, y: usize, k: usize) -> float32x4_t;
}

/// The per-plane [`Op`]s of a call, and what a sweep tells them about its steps.
pub(crate) trait Ops<const N: usize>: Copy {
    /// The window operation.
    type O: Op;
    /// The operation for plane `i` of the call, for a sweep over the column steps
    /// starting at output columns `x0`.
    ///
    /// # Safety
    /// `i` is below the call's plane count.
    unsafe fn op(self, i: usize, x0: &[usize; N]) -> Self::O;
}

/// The planes of one call: plane `i` (of `n`) reads `src + i * in_stride` and
/// writes `dst + i * out_stride`.
#[derive(Clone, Copy)]
pub(crate) struct Planes {
    /// First input plane.
    pub src: *const f32,
    /// Floats between input planes.
    pub in_stride: usize,
    /// First output plane.
    pub dst: *mut f32,
    /// Floats between output planes.
    pub out_stride: usize,
    /// Number of planes.
    pub n: usize,
    /// Input plane width.
    pub in_w: usize,
    /// Input plane height.
    pub in_h: usize,
    /// Output plane width.
    pub out_w: usize,
    /// Output plane height.
    pub out_h: usize,
}

/// One column sweep of `N` steps over every plane: outputs
/// `(y, x0[k] .. x0[k] + 4)` for every output row `y`; input rows
/// `0 .. min(in_h, 2 out_h + 1 - PT)` are visited (`PT` the padding rows above).
///
/// # Safety
/// For every plane, `src + r * in_w` is a row of the plane for `r < in_h` and
/// `t`'s loads stay in the row; `dst + y * out_w + x0[k] .. + 4` is writable for
/// `y < out_h`; `ops.op(i, ..)` is valid for `i < n`.
#[inline(always)]
unsafe fn sweep<const N: usize, S: Steps<N>, P: Ops<N>, const PT: usize>(
    pl: &Planes,
    x0: [usize; N],
    t: S,
    ops: P,
) {
    let (in_w, out_w, out_h) = (pl.in_w, pl.out_w, pl.out_h);
    let rows = pl.in_h.min(2 * out_h + 1 - PT);
    // SAFETY: loads through `t.taps` of rows r < rows <= in_h of plane i < n; a
    // store of output y happens only for y < out_h (in the loop,
    // y = (r + PT) / 2 - 1 < out_h because r + PT <= 2 out_h).
    unsafe {
        for i in 0..pl.n {
            let op = ops.op(i, &x0);
            let src = pl.src.add(i * pl.in_stride);
            let dst = pl.dst.add(i * pl.out_stride);
            let red = |x: &[[float32x4_t; 3]; N]| x.map(|x| op.reduce(&x));
            let fold = |a: [float32x4_t; N], x: &[<P::O as Op>::Row; N], dy: usize| {
                let mut o = a;
                for k in 0..N {
                    o[k] = op.add(a[k], &x[k], dy);
                }
                o
            };
            let st = |row: *mut f32, v: [float32x4_t; N], y: usize| {
                for k in 0..N {
                    vst1q_f32(row.add(x0[k]), op.finish(v[k], y, k));
                }
            };
            let begin = |x: &[<P::O as Op>::Row; N]| x.map(|x| op.start(&x, 0));
            let init = [op.init(); N];
            let mut cur = t.cursor(src);
            let mut row = || red(&t.next(&mut cur, in_w));
            // `a` is output `y` (pending); input row r has `q = r + PT`.
            let mut a = init;
            let mut y = 0;
            let mut r = 0;
            if rows > 0 && PT % 2 == 1 {
                // q odd: row dy = 1 of output (q - 1) / 2 = 0.
                a = fold(a, &row(), 1);
                r = 1;
            } else if rows > 0 && PT == 0 {
                // q = 0 starts output 0; q = 1 adds its dy = 1.
                a = begin(&row());
                r = 1;
                if rows > 1 {
                    a = fold(a, &row(), 1);
                    r = 2;
                }
            }
            // Now q = r + PT is even and `a` is output y = q / 2 - 1.
            // One trip count for the pairs of rows (not a compare of the row
            // index against `rows` per trip: LLVM then keeps three induction
            // variables alive in the loop).
            let mut q = dst;
            let pairs = rows.saturating_sub(r) / 2;
            for _ in 0..pairs {
                let x = row();
                st(q, fold(a, &x, 2), y);
                a = begin(&x);
                a = fold(a, &row(), 1);
                q = q.add(out_w);
                y += 1;
            }
            r += 2 * pairs;
            if r < rows {
                let x = row();
                st(q, fold(a, &x, 2), y);
                y += 1;
                // Its `dy = 0` output is below the plane in a short band.
                a = if y < out_h { begin(&x) } else { init };
            }
            // Outputs past the last visited row read only padding below it.
            if y < out_h {
                st(dst.add(y * out_w), a, y);
            }
            for yy in y + 1..out_h {
                st(dst.add(yy * out_w), init, yy);
            }
        }
    }
}

/// All column sweeps of a call: body steps in pairs, a leftover body step paired
/// with the first edge step, then the edge steps in pairs (sharing their loads
/// when they gather from the same vectors). `fill` is the value of padding lanes
/// when `FILL`. `band` is `ops` as a [`BandOp`] where the asm band loop has it:
/// the body pairs of a band with every input row inside the plane (no padding
/// above, `2 out_h + 1 <= in_h`: the row pipeline's bands but a plane's first and
/// last, and whole planes without padding above) run there, in chunks of at most
/// 4 output rows.
///
/// # Safety
/// `plan` was made by `RowPlan::new(out_w, in_w, pad_left, 2, (9, true), 4)` for this
/// geometry; the planes and `ops` are valid as for [`sweep`], and `band` computes
/// what `ops` does with the same filters.
pub(crate) unsafe fn run<P: Ops<2> + Ops<1>, const FILL: bool, const PT: usize>(
    pl: &Planes,
    plan: &RowPlan,
    pad_left: usize,
    fill: float32x4_t,
    ops: P,
    band: Option<BandOp>,
) {
    let band = band.filter(|_| PT == 0 && pl.in_h > 2 * pl.out_h);
    // SAFETY: register-only reinterpretation.
    let fill = unsafe { vreinterpretq_u8_f32(fill) };
    let body = |s: usize| {
        let x0 = plan.body_x(s);
        (
            x0,
            Body {
                col: 2 * x0 - pad_left,
            },
        )
    };
    let edge = |e: usize| {
        let e = &plan.edges[e];
        (
            e.x0,
            Edge::<FILL> {
                offs: e.offs,
                idx: e.idx,
                fill,
            },
        )
    };
    // SAFETY: forwarded contract; every step comes from the plan.
    unsafe {
        let mut s = 0;
        while s + 2 <= plan.n_body() {
            let ((x0, t0), (x1, t1)) = (body(s), body(s + 1));
            // The band's 2 out_h + 1 <= in_h input rows and both body windows are
            // inside the plane; the outputs are columns x0, x1 .. + 4 <= out_w of
            // rows below out_h.
            // A taller band runs as chunks of at most 4 output rows (the asm
            // unrolls its rows), each from its own first input row: chunk rows
            // r0 .. r0 + b read input rows 2 r0 .. 2 (r0 + b) + 1 <= in_h.
            let Some(op) = band else {
                sweep::<2, _, P, PT>(pl, [x0, x1], (t0, t1), ops);
                s += 2;
                continue;
            };
            let mut r0 = 0;
            while r0 < pl.out_h {
                let b = (pl.out_h - r0).min(4);
                let ch = Planes {
                    src: pl.src.wrapping_add(2 * r0 * pl.in_w),
                    dst: pl.dst.wrapping_add(r0 * pl.out_w),
                    in_h: pl.in_h - 2 * r0,
                    out_h: b,
                    ..*pl
                };
                let (cols, x) = ([t0.col, t1.col], [x0, x1]);
                match b {
                    1 => body_pair::<1>(&ch, cols, x, op),
                    2 => body_pair::<2>(&ch, cols, x, op),
                    3 => body_pair::<3>(&ch, cols, x, op),
                    _ => body_pair::<4>(&ch, cols, x, op),
                }
                r0 += b;
            }
            s += 2;
        }
        // The usual row ([`RowPlan::ext`]: one column of padding on the left, none
        // needed on the right, at least 8 wide): its one border step takes
        // [`LeftEdge`]'s taps.
        if plan.ext {
            let t = LeftEdge {
                pad: if FILL {
                    vreinterpretq_f32_u8(fill)
                } else {
                    vdupq_n_f32(0.0)
                },
            };
            if s < plan.n_body() {
                let (x0, t0) = body(s);
                sweep::<2, _, P, PT>(pl, [x0, 0], (t0, t), ops);
            } else {
                sweep::<1, _, P, PT>(pl, [0], (t,), ops);
            }
            return;
        }
        let mut e = 0;
        if s < plan.n_body() {
            let (x0, t0) = body(s);
            if plan.n_edges > 0 {
                let (x1, t1) = edge(0);
                sweep::<2, _, P, PT>(pl, [x0, x1], (t0, t1), ops);
                e = 1;
            } else {
                sweep::<1, _, P, PT>(pl, [x0], (t0,), ops);
            }
        }
        while e + 2 <= plan.n_edges {
            let ((x0, t0), (x1, t1)) = (edge(e), edge(e + 1));
            if t0.offs == t1.offs {
                let t = EdgePair::<FILL> {
                    offs: t0.offs,
                    idx: [t0.idx, t1.idx],
                    fill,
                };
                sweep::<2, _, P, PT>(pl, [x0, x1], t, ops);
            } else {
                sweep::<2, _, P, PT>(pl, [x0, x1], (t0, t1), ops);
            }
            e += 2;
        }
        if e < plan.n_edges {
            let (x0, t0) = edge(e);
            sweep::<1, _, P, PT>(pl, [x0], (t0,), ops);
        }
    }
}

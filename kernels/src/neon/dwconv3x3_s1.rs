//! 3x3 depthwise convolution, stride 1, per plane, as column sweeps.
//!
//! A plane's output columns are covered by 4-wide column steps ([`RowPlan`]); each
//! step sweeps down the plane once. Every input row is loaded once per sweep and
//! its three shifted windows (taps `dx = 0, 1, 2`) are added into the three output
//! rows it feeds (three rolling accumulators, unrolled by three so they rotate by
//! renaming): per input row three loads (unaligned, at the window start and one
//! and two columns on), nine lane FMAs, one `mov` (the
//! bias of the new accumulator) and one store. A zero bias (the planner moves
//! every ShuffleNet depthwise bias into the next pointwise conv) needs no `mov`:
//! the new accumulator's first product is an `fmul`. Inside the row (window inside the
//! input) the taps are plain loads; the border columns gather them
//! with `tbl` from two vectors loaded inside the row (lanes outside the input read
//! as zero). Rows above and below the plane are padding and are simply not
//! visited, so any pad of 0..=2 costs no branches in the loop. A row whose width
//! is not a multiple of 4 ends with a step overlapping the previous one (the same
//! values are rewritten). Bands of 1-4 output rows with no padding above (the row
//! pipeline's) run an unrolled sweep with one accumulator per output row instead:
//! their body steps in fours (no ReLU) and pairs in the asm loops of
//! [`super::dwconv3x3s1_band`] when every input row of the band is inside the
//! plane, the edge steps and a plane's partial last band in [`short_sweep`].

use super::common::{fma_taps, load_filter, start_taps, table2, RowPlan};
use super::dwconv3x3s1_band::{body_pair, body_quad};
use crate::{Depthwise3x3, PlaneGeom};
use core::arch::aarch64::*;
use std::ops::Range;

/// The three taps of one input row for one column step.
trait Taps: Copy {
    /// Taps of the row starting at `row`.
    ///
    /// # Safety
    /// The step's loads must be inside the row (guaranteed by [`RowPlan`]).
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3];
}

/// Column step inside the row: the window starts at column `col`. Its taps are
/// three loads at `col`, `col + 1` and `col + 2`: for two neighbouring steps the
/// six loads pair up into three `ldp`, against an `ldp`, an `ldr` and four `ext`
/// for aligned loads shifted in registers.
#[derive(Clone, Copy)]
struct Body {
    col: usize,
}

impl Taps for Body {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3] {
        // SAFETY: reads columns col .. col + 6, inside the row (body condition:
        // col .. col + 8).
        unsafe {
            let p = row.add(self.col);
            [vld1q_f32(p), vld1q_f32(p.add(1)), vld1q_f32(p.add(2))]
        }
    }
}

/// Border column step: taps gathered from the vectors at columns `offs`.
#[derive(Clone, Copy)]
struct Edge {
    offs: [usize; 2],
    idx: [uint8x16_t; 3],
}

impl Taps for Edge {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3] {
        // SAFETY: the plan put both 4-float loads inside the row; `tbl` is
        // register-only.
        unsafe {
            let tab = table2(
                vld1q_f32(row.add(self.offs[0])),
                vld1q_f32(row.add(self.offs[1])),
            );
            self.idx.map(|ix| vreinterpretq_f32_u8(vqtbl2q_u8(tab, ix)))
        }
    }
}

/// Left border step of a row with one column of padding on each side (output
/// columns 0 .. 4, window from column -1): taps `dx = 1, 2` are plain loads at
/// columns 0 and 1, tap `dx = 0` the first shifted one lane up behind a zero
/// (`ext`), where [`Edge`] loads two vectors and gathers all three taps with
/// `tbl` (three index vectors held in registers).
#[derive(Clone, Copy)]
struct LeftEdge;

impl Taps for LeftEdge {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3] {
        // SAFETY: reads columns 0 .. 5, inside the row (at least 5 wide).
        unsafe {
            let (v, w) = (vld1q_f32(row), vld1q_f32(row.add(1)));
            [vextq_f32::<3>(vdupq_n_f32(0.0), v), v, w]
        }
    }
}

/// Right border step of such a row (output columns `w - 4 .. w`, window from
/// column `col = w - 5`): taps `dx = 0, 1` are plain loads at `col` and `col + 1`,
/// tap `dx = 2` the second shifted one lane down with a zero after it.
#[derive(Clone, Copy)]
struct RightEdge {
    col: usize,
}

impl Taps for RightEdge {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3] {
        // SAFETY: reads columns col .. col + 5 = w, inside the row.
        unsafe {
            let p = row.add(self.col);
            let (v, w) = (vld1q_f32(p), vld1q_f32(p.add(1)));
            [v, w, vextq_f32::<1>(w, vdupq_n_f32(0.0))]
        }
    }
}

/// The planes of one call: plane `i` (of `n`) reads `src + i * in_stride`, writes
/// `dst + i * out_stride`, with filter `w + 9 i` and bias `bias[i]`.
#[derive(Clone, Copy)]
pub(super) struct Planes {
    /// Row 0 of input plane 0.
    pub src: *const f32,
    /// Floats between input planes.
    pub in_stride: usize,
    /// Row 0 of output plane 0.
    pub dst: *mut f32,
    /// Floats between output planes.
    pub out_stride: usize,
    /// Filter of plane 0 (9 floats per plane).
    pub w: *const f32,
    /// Bias of plane 0 (one per plane).
    pub bias: *const f32,
    /// Planes (at least 1).
    pub n: usize,
}

/// The column steps one sweep computes together (one or two), each with its own
/// taps; sharing the sweep halves the per-sweep row bookkeeping.
trait Steps<const N: usize>: Copy {
    /// Taps of every step for the row starting at `row`.
    ///
    /// # Safety
    /// As for [`Taps::taps`].
    unsafe fn taps(self, row: *const f32) -> [[float32x4_t; 3]; N];
}

impl<A: Taps> Steps<1> for (A,) {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [[float32x4_t; 3]; 1] {
        // SAFETY: forwarded contract.
        unsafe { [self.0.taps(row)] }
    }
}

impl<A: Taps, B: Taps> Steps<2> for (A, B) {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [[float32x4_t; 3]; 2] {
        // SAFETY: forwarded contract.
        unsafe { [self.0.taps(row), self.1.taps(row)] }
    }
}

/// Two border steps gathering from the same two vectors (narrow rows, or the
/// last two steps of a row): one pair of loads, six `tbl`.
#[derive(Clone, Copy)]
struct EdgePair {
    offs: [usize; 2],
    idx: [[uint8x16_t; 3]; 2],
}

impl Steps<2> for EdgePair {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [[float32x4_t; 3]; 2] {
        // SAFETY: as for `Edge::taps`.
        unsafe {
            let tab = table2(
                vld1q_f32(row.add(self.offs[0])),
                vld1q_f32(row.add(self.offs[1])),
            );
            self.idx
                .map(|idx| idx.map(|ix| vreinterpretq_f32_u8(vqtbl2q_u8(tab, ix))))
        }
    }
}

/// `acc[k] + taps[k] . w[dy]` for every step `k`.
#[inline(always)]
fn fma_n<const N: usize>(
    acc: [float32x4_t; N],
    x: &[[float32x4_t; 3]; N],
    w: &[float32x4_t; 3],
    dy: usize,
) -> [float32x4_t; N] {
    let mut out = acc;
    for k in 0..N {
        out[k] = fma_taps(acc[k], &x[k], w, dy);
    }
    out
}

/// The first filter row of a new output row for every step `k`: from the bias,
/// or (`ZB`, zero bias) from an `fmul`.
#[inline(always)]
fn start_n<const N: usize, const ZB: bool>(
    bias: [float32x4_t; N],
    x: &[[float32x4_t; 3]; N],
    w: &[float32x4_t; 3],
) -> [float32x4_t; N] {
    let mut out = bias;
    for k in 0..N {
        out[k] = start_taps::<ZB>(bias[k], &x[k], w, 0);
    }
    out
}

/// Stores the `N` steps' vectors of one output row at `row + x0[k]`, clamped at
/// zero when `RELU`.
///
/// # Safety
/// `row + x0[k] .. + 4` is writable for every `k`.
#[inline(always)]
unsafe fn store<const N: usize, const RELU: bool>(
    row: *mut f32,
    x0: [usize; N],
    v: [float32x4_t; N],
) {
    // SAFETY: the caller's contract; register-only clamp.
    unsafe {
        for k in 0..N {
            let v = if RELU {
                vmaxq_f32(v[k], vdupq_n_f32(0.0))
            } else {
                v[k]
            };
            vst1q_f32(row.add(x0[k]), v);
        }
    }
}

/// One column sweep of `N` steps over every plane: outputs
/// `(y, x0[k] .. x0[k] + 4)` for every output row `y`. Input rows `0 .. rows` are
/// visited (`rows = min(in_h, out_h + 2 - PT)`, `PT` the padding rows above).
/// The plane loop is innermost but one, so the steps' setup is paid once per call.
///
/// # Safety
/// For every plane, `src + r * in_w` is a row of the plane for `r < rows` and
/// `t`'s loads stay in the row; `dst + y * out_w + x0[k] .. + 4` is writable for
/// `y < out_h`; `w` and `bias` hold the planes' filters and biases.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn sweep<const N: usize, S: Steps<N>, const RELU: bool, const PT: usize, const ZB: bool>(
    pl: &Planes,
    in_w: usize,
    rows: usize,
    x0: [usize; N],
    out_w: usize,
    out_h: usize,
    t: S,
) {
    // SAFETY: loads through `t.taps` of rows r < rows of plane i < n; stores at
    // rows 0 <= y < out_h (the steady loops store rows r + PT - 2 for r < rows,
    // which are < out_h because rows <= out_h + 2 - PT).
    unsafe {
        let st = |row: *mut f32, v: [float32x4_t; N]| store::<N, RELU>(row, x0, v);
        let pt = PT;
        for i in 0..pl.n {
            let src = pl.src.add(i * pl.in_stride);
            let dst = pl.dst.add(i * pl.out_stride);
            let w = load_filter(pl.w.add(9 * i));
            let bias = [vld1q_dup_f32(pl.bias.add(i)); N];
            // `a` accumulates output `r + pt - 2` (completed by row r), `b` output
            // `r + pt - 1`; row r starts output `r + pt`.
            let (mut a, mut b) = (bias, bias);
            let mut r = 0;
            // One row with every tap product checked: products into outputs
            // below the plane (the last rows of a short band) are skipped, the
            // accumulators still shift.
            macro_rules! edge_row {
                ($r:expr) => {{
                    let x = t.taps(src.add($r * in_w));
                    let y = $r + pt;
                    if y >= 2 {
                        a = fma_n(a, &x, &w, 2);
                        st(dst.add((y - 2) * out_w), a);
                    }
                    a = if y >= 1 && y - 1 < out_h {
                        fma_n(b, &x, &w, 1)
                    } else {
                        b
                    };
                    b = if y < out_h {
                        start_n::<N, ZB>(bias, &x, &w)
                    } else {
                        bias
                    };
                }};
            }
            // Rows r < `full` feed only outputs inside the plane from their
            // `dy = 0` tap on; rows past it (the last one or two of a band) feed
            // some outputs below it.
            // A plane whose last row only wastes its `dy = 0` product keeps the
            // unchecked loop to the end.
            let full = rows.min(out_h.saturating_sub(pt));
            let full = if rows - full < 2 { rows } else { full };
            // Rows whose `dy = 2` output lies above the plane: nothing to store.
            while r < full && r + pt < 2 {
                let x = t.taps(src.add(r * in_w));
                a = fma_n(b, &x, &w, 1);
                b = start_n::<N, ZB>(bias, &x, &w);
                r += 1;
            }
            if r < full {
                let mut p = src.add(r * in_w);
                let mut q = dst.add((r + pt - 2) * out_w);
                // Steady state: three rows per iteration, accumulators renamed
                // (one trip count: a compare of `r` per trip kept more induction
                // variables alive).
                let trips = (full - r) / 3;
                for _ in 0..trips {
                    let x = t.taps(p);
                    a = fma_n(a, &x, &w, 2);
                    st(q, a);
                    b = fma_n(b, &x, &w, 1);
                    let mut c = start_n::<N, ZB>(bias, &x, &w);
                    let x = t.taps(p.add(in_w));
                    b = fma_n(b, &x, &w, 2);
                    st(q.add(out_w), b);
                    c = fma_n(c, &x, &w, 1);
                    a = start_n::<N, ZB>(bias, &x, &w);
                    let x = t.taps(p.add(2 * in_w));
                    c = fma_n(c, &x, &w, 2);
                    st(q.add(2 * out_w), c);
                    a = fma_n(a, &x, &w, 1);
                    b = start_n::<N, ZB>(bias, &x, &w);
                    p = p.add(3 * in_w);
                    q = q.add(3 * out_w);
                }
                r += 3 * trips;
                while r < full {
                    let x = t.taps(p);
                    a = fma_n(a, &x, &w, 2);
                    st(q, a);
                    a = fma_n(b, &x, &w, 1);
                    b = start_n::<N, ZB>(bias, &x, &w);
                    p = p.add(in_w);
                    q = q.add(out_w);
                    r += 1;
                }
            }
            while r < rows {
                edge_row!(r);
                r += 1;
            }
            // Outputs past the last visited row read only padding below it: the
            // two pending ones hold their sums, later ones are the bias alone.
            let y = r + pt;
            if y >= 2 && y - 2 < out_h {
                st(dst.add((y - 2) * out_w), a);
            }
            if y >= 1 && y - 1 < out_h {
                st(dst.add((y - 1) * out_w), b);
            }
            for yy in y..out_h {
                st(dst.add(yy * out_w), bias);
            }
        }
    }
}

/// [`sweep`] for a short band without padding above (`PT = 0`): `B = out_h`
/// output rows from input rows `0 .. rows` (`rows <= B + 2`; rows past it are
/// padding below), unrolled over the rows, so no row pays the general sweep's
/// per-row checks. The row pipeline's depthwise bands are 1-4 rows high, where
/// the general sweep never reaches its steady loop.
///
/// # Safety
/// As for [`sweep`] with `PT = 0` and `out_h = B`.
#[inline(always)]
unsafe fn short_sweep<
    const N: usize,
    S: Steps<N>,
    const RELU: bool,
    const B: usize,
    const ZB: bool,
>(
    pl: &Planes,
    in_w: usize,
    rows: usize,
    x0: [usize; N],
    out_w: usize,
    t: S,
) {
    // SAFETY: loads through `t.taps` of rows r < rows of plane i < n; stores at
    // rows y < B = out_h.
    unsafe {
        for i in 0..pl.n {
            let src = pl.src.add(i * pl.in_stride);
            let dst = pl.dst.add(i * pl.out_stride);
            let w = load_filter(pl.w.add(9 * i));
            let bias = [vld1q_dup_f32(pl.bias.add(i)); N];
            // acc[y] accumulates output row y, which reads input rows y .. y + 3.
            let mut acc = [bias; B];
            for r in 0..B + 2 {
                if r >= rows {
                    break;
                }
                let x = t.taps(src.add(r * in_w));
                for dy in 0..3 {
                    if r >= dy && r - dy < B {
                        // Row r = y is output y's first (dy = 0) and is visited
                        // before any other row of it.
                        acc[r - dy] = if dy == 0 {
                            start_n::<N, ZB>(acc[r], &x, &w)
                        } else {
                            fma_n(acc[r - dy], &x, &w, dy)
                        };
                    }
                }
            }
            for (y, v) in acc.into_iter().enumerate() {
                store::<N, RELU>(dst.add(y * out_w), x0, v);
            }
        }
    }
}

/// One sweep: the general [`sweep`] (`B = 0`) or the short-band one.
///
/// # Safety
/// As for [`sweep`] (and [`short_sweep`] when `B > 0`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn any_sweep<
    const N: usize,
    S: Steps<N>,
    const RELU: bool,
    const PT: usize,
    const B: usize,
    const ZB: bool,
>(
    pl: &Planes,
    in_w: usize,
    rows: usize,
    x0: [usize; N],
    out_w: usize,
    out_h: usize,
    t: S,
) {
    // SAFETY: forwarded contract.
    unsafe {
        if B == 0 {
            sweep::<N, S, RELU, PT, ZB>(pl, in_w, rows, x0, out_w, out_h, t);
        } else {
            short_sweep::<N, S, RELU, B, ZB>(pl, in_w, rows, x0, out_w, t);
        }
    }
}

/// All column sweeps of the call: body steps in pairs, a leftover body step
/// paired with the first edge step, then the edge steps in pairs.
///
/// `B > 0` selects [`short_sweep`] (then `PT = 0` and `out_h = B`).
///
/// # Safety
/// As for [`sweep`], for every step of `plan`.
#[inline(always)]
unsafe fn steps<const RELU: bool, const PT: usize, const B: usize, const ZB: bool>(
    pl: &Planes,
    g: &PlaneGeom,
    rows: usize,
    plan: &RowPlan,
) {
    let (iw, ow, oh) = (g.in_w, g.out_w, g.out_h);
    let body = |s: usize| {
        let x0 = plan.body_x0 + 4 * s;
        (
            x0,
            Body {
                col: x0 - g.pad_left,
            },
        )
    };
    let edge = |e: usize| {
        let e = &plan.edges[e];
        (
            e.x0,
            Edge {
                offs: [e.offs[0], e.offs[1]],
                idx: e.idx,
            },
        )
    };
    // SAFETY: forwarded contract; every step comes from the plan. `body_pair` runs
    // only for short bands (`run` passes B = 1-4 with no padding above) whose
    // `B + 2` input rows are all inside the plane (`rows` is capped at `in_h`);
    // the two body steps at x0 and x0 + 4 have columns col .. col + 8 and col + 4
    // .. col + 12 inside the row (the asm reads col .. col + 10), and write output
    // columns x0 .. x0 + 8 < out_w. `body_quad` likewise for four body steps
    // (columns col .. col + 20 inside the row, the asm reading col .. col + 18;
    // output columns x0 .. x0 + 16 < out_w).
    unsafe {
        let mut s = 0;
        while s + 2 <= plan.body_steps {
            let ((x0, t0), (x1, t1)) = (body(s), body(s + 1));
            if B > 0 && !RELU && rows == B + 2 && s + 4 <= plan.body_steps {
                body_quad::<B>(pl, (iw, ow), (t0.col, x0), ZB);
                s += 4;
                continue;
            }
            if B > 0 && rows == B + 2 {
                // A whole short band (every input row inside the plane): the asm
                // loop over the planes (same sums, same order).
                body_pair::<B>(pl, (iw, ow), (t0.col, x0), RELU, ZB);
            } else {
                any_sweep::<2, _, RELU, PT, B, ZB>(pl, iw, rows, [x0, x1], ow, oh, (t0, t1));
            }
            s += 2;
        }
        // The usual row ([`RowPlan::ext`]: one column of padding each side, at
        // least 8 wide, one border step at each end): the border steps take
        // [`LeftEdge`] and [`RightEdge`]'s taps, a leftover body step sweeps alone.
        if plan.ext {
            if s < plan.body_steps {
                let (x0, t0) = body(s);
                any_sweep::<1, _, RELU, PT, B, ZB>(pl, iw, rows, [x0], ow, oh, (t0,));
            }
            let t = (LeftEdge, RightEdge { col: ow - 5 });
            any_sweep::<2, _, RELU, PT, B, ZB>(pl, iw, rows, [0, ow - 4], ow, oh, t);
            return;
        }
        let mut e = 0;
        if s < plan.body_steps {
            let (x0, t0) = body(s);
            if plan.n_edges > 0 {
                let (x1, t1) = edge(0);
                any_sweep::<2, _, RELU, PT, B, ZB>(pl, iw, rows, [x0, x1], ow, oh, (t0, t1));
                e = 1;
            } else {
                any_sweep::<1, _, RELU, PT, B, ZB>(pl, iw, rows, [x0], ow, oh, (t0,));
            }
        }
        while e + 2 <= plan.n_edges {
            let ((x0, t0), (x1, t1)) = (edge(e), edge(e + 1));
            if t0.offs == t1.offs {
                let t = EdgePair {
                    offs: t0.offs,
                    idx: [t0.idx, t1.idx],
                };
                any_sweep::<2, _, RELU, PT, B, ZB>(pl, iw, rows, [x0, x1], ow, oh, t);
            } else {
                any_sweep::<2, _, RELU, PT, B, ZB>(pl, iw, rows, [x0, x1], ow, oh, (t0, t1));
            }
            e += 2;
        }
        if e < plan.n_edges {
            let (x0, t0) = edge(e);
            any_sweep::<1, _, RELU, PT, B, ZB>(pl, iw, rows, [x0], ow, oh, (t0,));
        }
    }
}

/// [`steps`] for the call's padding above and band height: short bands without
/// padding above (the row pipeline's) take the unrolled sweep.
///
/// # Safety
/// As for [`steps`].
#[inline(always)]
unsafe fn by_geom<const RELU: bool, const ZB: bool>(
    pl: &Planes,
    g: &PlaneGeom,
    rows: usize,
    plan: &RowPlan,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match (g.pad_top, g.out_h) {
            (0, 1) => steps::<RELU, 0, 1, ZB>(pl, g, rows, plan),
            (0, 2) => steps::<RELU, 0, 2, ZB>(pl, g, rows, plan),
            (0, 3) => steps::<RELU, 0, 3, ZB>(pl, g, rows, plan),
            (0, 4) => steps::<RELU, 0, 4, ZB>(pl, g, rows, plan),
            (0, _) => steps::<RELU, 0, 0, ZB>(pl, g, rows, plan),
            (1, _) => steps::<RELU, 1, 0, ZB>(pl, g, rows, plan),
            _ => steps::<RELU, 2, 0, ZB>(pl, g, rows, plan),
        }
    }
}

/// Convolves planes `channels` (contract of the scalar twin, `check` already
/// passed). Returns `false`, having written nothing, when the geometry is outside
/// the fast path (see [`RowPlan::new`]); the caller then runs the scalar twin.
/// `zb`: every bias of the call is zero (outputs start with an `fmul`).
pub(crate) fn run(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
    zb: bool,
) -> bool {
    if g.out_h == 0 || g.out_w == 0 || channels.is_empty() {
        return true;
    }
    // Body steps read 8 columns from the window start, inside the row.
    // Borrowed, not moved out of the option: no copy of the plan.
    let plan = RowPlan::new(g.out_w, g.in_w, g.pad_left, 1, (8, false), 2);
    let Some(plan) = plan.as_ref() else {
        return false;
    };
    let rows = g.in_h.min(g.out_h + 2 - g.pad_top);
    // SAFETY: `check` proved input planes `channels` (`in_h * in_w` floats at
    // `c * in_stride`), output planes `0 .. channels.len()` (`out_h * out_w` floats
    // at `i * out_stride`), `9 * channels.end` weights and `channels.end` biases
    // are inside their buffers; every step has `x0 + 4 <= out_w` and its loads
    // inside the row (`RowPlan`).
    unsafe {
        let pl = Planes {
            src: input.as_ptr().add(channels.start * g.in_stride),
            in_stride: g.in_stride,
            dst: output.as_mut_ptr(),
            out_stride: g.out_stride,
            w: p.weights.as_ptr().add(9 * channels.start),
            bias: p.bias.as_ptr().add(channels.start),
            n: channels.len(),
        };
        match (p.relu, zb) {
            (false, false) => by_geom::<false, false>(&pl, g, rows, plan),
            (false, true) => by_geom::<false, true>(&pl, g, rows, plan),
            (true, false) => by_geom::<true, false>(&pl, g, rows, plan),
            (true, true) => by_geom::<true, true>(&pl, g, rows, plan),
        }
    }
    true
}

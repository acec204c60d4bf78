//! Small NEON helpers shared by the kernels: partial-vector loads and stores for
//! tails, the weight-lane FMA of one 3-tap row, and the column-step plan (with its
//! `tbl` gather indices for border columns) of the 3-wide window kernels.

use core::arch::aarch64::*;

/// A zero vector.
#[inline(always)]
pub(crate) fn zero() -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64; register-only.
    unsafe { vdupq_n_f32(0.0) }
}

/// Loads the first `n` floats at `p` (`n` in `1..=4`), zero in the other lanes.
///
/// # Safety
/// `p .. p + n` must be readable.
#[inline(always)]
pub(crate) unsafe fn load_part(p: *const f32, n: usize) -> float32x4_t {
    // SAFETY: each branch reads exactly the first `n` floats at `p`, which the
    // caller guarantees are readable.
    unsafe {
        let z = vdupq_n_f32(0.0);
        match n {
            1 => vld1q_lane_f32::<0>(p, z),
            2 => vcombine_f32(vld1_f32(p), vdup_n_f32(0.0)),
            3 => vld1q_lane_f32::<2>(p.add(2), vcombine_f32(vld1_f32(p), vdup_n_f32(0.0))),
            _ => vld1q_f32(p),
        }
    }
}

/// Stores the first `n` lanes of `v` at `p` (`n` in `1..=4`).
///
/// # Safety
/// `p .. p + n` must be writable.
#[inline(always)]
pub(crate) unsafe fn store_part(p: *mut f32, v: float32x4_t, n: usize) {
    // SAFETY: each branch writes exactly the first `n` floats at `p`, which the
    // caller guarantees are writable.
    unsafe {
        match n {
            1 => vst1q_lane_f32::<0>(p, v),
            2 => vst1_f32(p, vget_low_f32(v)),
            3 => {
                vst1_f32(p, vget_low_f32(v));
                vst1q_lane_f32::<2>(p.add(2), v);
            }
            _ => vst1q_f32(p, v),
        }
    }
}

/// `acc + t0 * w[3dy] + t1 * w[3dy + 1] + t2 * w[3dy + 2]` for the 3x3 filter held
/// in the lanes of `w` (taps 0-3, 4-7, 8 in lane 0 of `w[2]`). `dy` is a constant
/// after inlining, so the match folds away.
#[inline(always)]
pub(crate) fn fma_taps(
    acc: float32x4_t,
    t: &[float32x4_t; 3],
    w: &[float32x4_t; 3],
    dy: usize,
) -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64; these intrinsics only touch registers.
    unsafe {
        match dy {
            0 => {
                let a = vfmaq_laneq_f32::<0>(acc, t[0], w[0]);
                let a = vfmaq_laneq_f32::<1>(a, t[1], w[0]);
                vfmaq_laneq_f32::<2>(a, t[2], w[0])
            }
            1 => {
                let a = vfmaq_laneq_f32::<3>(acc, t[0], w[0]);
                let a = vfmaq_laneq_f32::<0>(a, t[1], w[1]);
                vfmaq_laneq_f32::<1>(a, t[2], w[1])
            }
            _ => {
                let a = vfmaq_laneq_f32::<2>(acc, t[0], w[1]);
                let a = vfmaq_laneq_f32::<3>(a, t[1], w[1]);
                vfmaq_laneq_f32::<0>(a, t[2], w[2])
            }
        }
    }
}

/// `t0 * w[3dy] + t1 * w[3dy + 1] + t2 * w[3dy + 2]`: [`fma_taps`] from zero, its
/// first product an `fmul` (the start of an output of a zero-bias filter).
#[inline(always)]
pub(crate) fn mul_taps(t: &[float32x4_t; 3], w: &[float32x4_t; 3], dy: usize) -> float32x4_t {
    // SAFETY: NEON is baseline on aarch64; these intrinsics only touch registers.
    unsafe {
        match dy {
            0 => {
                let a = vmulq_laneq_f32::<0>(t[0], w[0]);
                let a = vfmaq_laneq_f32::<1>(a, t[1], w[0]);
                vfmaq_laneq_f32::<2>(a, t[2], w[0])
            }
            1 => {
                let a = vmulq_laneq_f32::<3>(t[0], w[0]);
                let a = vfmaq_laneq_f32::<0>(a, t[1], w[1]);
                vfmaq_laneq_f32::<1>(a, t[2], w[1])
            }
            _ => {
                let a = vmulq_laneq_f32::<2>(t[0], w[1]);
                let a = vfmaq_laneq_f32::<3>(a, t[1], w[1]);
                vfmaq_laneq_f32::<0>(a, t[2], w[2])
            }
        }
    }
}

/// An output's first filter row: [`mul_taps`] for a zero-bias filter (`ZB`),
/// else [`fma_taps`] from the bias.
#[inline(always)]
pub(crate) fn start_taps<const ZB: bool>(
    bias: float32x4_t,
    t: &[float32x4_t; 3],
    w: &[float32x4_t; 3],
    dy: usize,
) -> float32x4_t {
    if ZB {
        mul_taps(t, w, dy)
    } else {
        fma_taps(bias, t, w, dy)
    }
}

/// Loads a 3x3 filter (9 floats) into three vectors for [`fma_taps`].
///
/// # Safety
/// `w .. w + 9` must be readable.
#[inline(always)]
pub(crate) unsafe fn load_filter(w: *const f32) -> [float32x4_t; 3] {
    // SAFETY: reads w[0..8] and w[8], all inside the caller's 9 floats.
    unsafe { [vld1q_f32(w), vld1q_f32(w.add(4)), vld1q_dup_f32(w.add(8))] }
}

/// Most edge steps a row plan holds (sane geometries need at most 5).
pub(crate) const MAX_EDGES: usize = 8;

/// A 4-output column step of a 3-wide window kernel that touches the row's border.
/// Its taps are gathered with `tbl` from `N` vectors loaded at columns `offs[k]`
/// (`N` = 2 for stride 1, 4 for stride 2; all loads inside the row).
#[derive(Clone, Copy)]
pub(crate) struct EdgeStep {
    /// First output column of the step.
    pub x0: usize,
    /// Input column of each loaded vector (the first `N` used).
    pub offs: [usize; 4],
    /// Gather indices of the taps `dx = 0, 1, 2`: lane `t` of tap `dx` is input
    /// column `stride * (x0 + t) - pad_left + dx`, or index 0xFF (zero, or the
    /// fill value with `tbx`) when that column is padding.
    pub idx: [uint8x16_t; 3],
}

/// How the output columns of every row of a call are covered by 4-wide column
/// steps: `body` steps at `x0 = body_x0 + 4 s` read their window with plain loads
/// inside the row; the remaining steps (row borders, and a last step overlapping
/// the previous one when `out_w % 4 != 0`) are edge steps, except that the
/// overlapping step is a body step too ([`RowPlan::tail`]) when asked for and its
/// window lies inside the row.
#[derive(Clone, Copy)]
pub(crate) struct RowPlan {
    /// First output column of the body steps.
    pub body_x0: usize,
    /// Number of body steps.
    pub body_steps: usize,
    /// First output column of the overlapping last step, when it is a body step
    /// (after the regular ones: [`RowPlan::body_x`]).
    pub tail: Option<usize>,
    /// The edge steps (first `n_edges` valid).
    pub edges: [EdgeStep; MAX_EDGES],
    /// Number of edge steps.
    pub n_edges: usize,
    /// The row's border steps are the usual ones, whose taps the sweeps build
    /// from plain loads and `ext` instead of a gather: one column of padding on
    /// the left, and for stride 1 one on the right (`in_w == out_w`), a row at
    /// least 8 wide, and exactly one border step at each end (stride 1: at
    /// columns 0 and `out_w - 4`) or only at the left (stride 2: at column 0).
    /// Their gather indices are then not built (`idx` stays all 0xFF).
    pub ext: bool,
}

impl RowPlan {
    /// Plans a row of `out_w` outputs of a 3-wide window with stride `stride` over
    /// `in_w` inputs, `pad_left` padding columns on the left (any padding on the
    /// right). A body step's window starts at input column `stride * x0 - pad_left`
    /// and reads `body_span` floats from there; an edge step loads `n_vec` vectors.
    /// With `body_tail`, the overlapping last step of a row whose width is not a
    /// multiple of 4 is a body step when its window lies inside the row.
    /// `None` when the row is outside the fast path: `out_w < 4`, `in_w < 4`, or
    /// more than [`MAX_EDGES`] edge steps (an output far wider than its input).
    pub(crate) fn new(
        out_w: usize,
        in_w: usize,
        pad_left: usize,
        stride: usize,
        (body_span, body_tail): (usize, bool),
        n_vec: usize,
    ) -> Option<RowPlan> {
        if out_w < 4 || in_w < 4 {
            return None;
        }
        let no_idx = [0xFFu8; 16];
        // SAFETY: reads 16 bytes from a local array of 16 bytes.
        let no_idx = unsafe { vld1q_u8(no_idx.as_ptr()) };
        // Built where it is returned (every path returns `out`), so the plan of
        // some 700 bytes is not copied on the way out.
        let mut out = Some(RowPlan {
            body_x0: 0,
            body_steps: 0,
            tail: None,
            edges: [EdgeStep {
                x0: 0,
                offs: [0; 4],
                idx: [no_idx; 3],
            }; MAX_EDGES],
            n_edges: 0,
            ext: false,
        });
        let fits = out.as_mut().is_some_and(|plan| {
            plan.fill(out_w, in_w, pad_left, stride, (body_span, body_tail), n_vec)
                .is_some()
        });
        if !fits {
            out = None;
        }
        out
    }

    /// The steps of [`RowPlan::new`] into an empty plan; `None` past
    /// [`MAX_EDGES`] edge steps.
    fn fill(
        &mut self,
        out_w: usize,
        in_w: usize,
        pad_left: usize,
        stride: usize,
        (body_span, body_tail): (usize, bool),
        n_vec: usize,
    ) -> Option<()> {
        let plan = self;
        let add_edge = |plan: &mut RowPlan, x0: usize| -> Option<()> {
            if plan.n_edges == MAX_EDGES {
                return None;
            }
            let base = (stride * x0) as isize - pad_left as isize;
            let mut offs = [0usize; 4];
            let span = 4 * n_vec;
            for (k, o) in offs.iter_mut().enumerate().take(n_vec) {
                *o = if in_w >= span {
                    base.clamp(0, (in_w - span) as isize) as usize + 4 * k
                } else {
                    (4 * k).min(in_w - 4)
                };
            }
            plan.edges[plan.n_edges].x0 = x0;
            plan.edges[plan.n_edges].offs = offs;
            plan.n_edges += 1;
            Some(())
        };
        // The body steps are the interval of `i` (step at `x0 = 4 i`) whose window
        // start `4 stride i - pad_left` is at least 0 and at most `in_w -
        // body_span`; the steps before and after it are edges (found without a
        // pass over the row: a call runs on a band of a few rows).
        let steps = out_w / 4;
        let first = pad_left.div_ceil(4 * stride).min(steps);
        let end = match (in_w + pad_left).checked_sub(body_span) {
            Some(last_start) => (last_start / (4 * stride) + 1).clamp(first, steps),
            None => first,
        };
        for i in (0..first).chain(end..steps) {
            add_edge(plan, 4 * i)?;
        }
        if end > first {
            plan.body_x0 = 4 * first;
            plan.body_steps = end - first;
        }
        if !out_w.is_multiple_of(4) {
            let x0 = out_w - 4;
            let inside = (stride * x0)
                .checked_sub(pad_left)
                .is_some_and(|start| start + body_span <= in_w);
            if body_tail && inside {
                plan.tail = Some(x0);
            } else {
                add_edge(plan, x0)?;
            }
        }
        let edges = &plan.edges[..plan.n_edges];
        plan.ext = pad_left == 1
            && match (stride, edges) {
                (1, [left, right]) => {
                    in_w == out_w && out_w >= 8 && left.x0 == 0 && right.x0 + 4 == out_w
                }
                (2, [left]) => in_w >= 8 && left.x0 == 0,
                _ => false,
            };
        if !plan.ext {
            let consecutive = in_w >= 4 * n_vec;
            for e in &mut plan.edges[..plan.n_edges] {
                e.idx = gather_indices(e, (in_w, pad_left, stride), n_vec, consecutive);
            }
        }
        Some(())
    }

    /// Body steps, the tail included.
    pub(crate) fn n_body(&self) -> usize {
        self.body_steps + usize::from(self.tail.is_some())
    }

    /// First output column of body step `s < n_body()`.
    pub(crate) fn body_x(&self, s: usize) -> usize {
        match self.tail {
            Some(x0) if s == self.body_steps => x0,
            _ => self.body_x0 + 4 * s,
        }
    }
}

/// The `tbl` indices of an edge step's taps `dx = 0, 1, 2` (see [`EdgeStep::idx`])
/// from its `x0` and `offs`, for rows of `in_w` inputs with `pad_left` padding
/// columns and stride `stride`. With `consecutive` (rows at least `4 n_vec` wide)
/// the loaded vectors are consecutive columns: the table byte of an input column
/// is then `4 (pos - offs[0]) + b`, no search.
fn gather_indices(
    e: &EdgeStep,
    (in_w, pad_left, stride): (usize, usize, usize),
    n_vec: usize,
    consecutive: bool,
) -> [uint8x16_t; 3] {
    let base = (stride * e.x0) as isize - pad_left as isize;
    let span = 4 * n_vec;
    let offs = e.offs;
    [0, 1, 2].map(|dx| {
        let mut lanes = [u32::MAX; 4];
        for (t, lane) in lanes.iter_mut().enumerate() {
            let pos = base + dx + (stride * t) as isize;
            let at = if consecutive {
                // Branch-free: inside the row and the loaded span.
                let d = pos - offs[0] as isize;
                let inside = pos >= 0 && pos < in_w as isize && d >= 0 && d < span as isize;
                inside.then_some(d as usize)
            } else if pos < 0 || pos >= in_w as isize {
                None
            } else {
                let pos = pos as usize;
                (0..n_vec)
                    .find(|&k| (offs[k]..offs[k] + 4).contains(&pos))
                    .map(|k| 4 * k + pos - offs[k])
            };
            if let Some(at) = at {
                // Bytes 4 at .. 4 at + 4, little-endian.
                *lane = (4 * at as u32) * 0x0101_0101 + 0x0302_0100;
            }
        }
        // SAFETY: reads 16 bytes from a local array of 16 bytes.
        unsafe { vreinterpretq_u8_u32(vld1q_u32(lanes.as_ptr())) }
    })
}

/// Reinterprets two vectors as a 32-byte lookup table.
#[inline(always)]
pub(crate) fn table2(a: float32x4_t, b: float32x4_t) -> uint8x16x2_t {
    // SAFETY: register-only reinterpretation.
    unsafe { uint8x16x2_t(vreinterpretq_u8_f32(a), vreinterpretq_u8_f32(b)) }
}

/// Reinterprets four vectors as a 64-byte lookup table.
#[inline(always)]
pub(crate) fn table4(
    a: float32x4_t,
    b: float32x4_t,
    c: float32x4_t,
    d: float32x4_t,
) -> uint8x16x4_t {
    // SAFETY: register-only reinterpretation.
    unsafe {
        uint8x16x4_t(
            vreinterpretq_u8_f32(a),
            vreinterpretq_u8_f32(b),
            vreinterpretq_u8_f32(c),
            vreinterpretq_u8_f32(d),
        )
    }
}

/// Inline-asm text: `$m` (`fmla`, or `fmul` for an accumulator's first product)
/// of accumulator `v$acc` with taps `v$x` times filter lane `v$w.s[$l]`.
macro_rules! fm {
    ($m:literal, $acc:literal, $x:literal, $w:literal, $l:literal) => {
        concat!($m, " v", $acc, ".4s, v", $x, ".4s, v", $w, ".s[", $l, "]\n")
    };
}
pub(crate) use fm;

/// Inline-asm text: ReLU of the register pair `v$a`, `v$b` against the zero
/// vector `v$zero`.
macro_rules! fmax_pair {
    ($zero:literal, $a:literal, $b:literal) => {
        concat!(
            "fmax v", $a, ".4s, v", $a, ".4s, v", $zero, ".4s\n", "fmax v", $b, ".4s, v", $b,
            ".4s, v", $zero, ".4s\n",
        )
    };
}
pub(crate) use fmax_pair;

/// Inline-asm text: store of the register pair `v$a`, `v$b` (eight consecutive
/// floats) at the cursor operand `{$at}`, post-indexed by the operand `{$step}`.
macro_rules! st1_pair {
    ($at:literal, $step:literal, $a:literal, $b:literal) => {
        concat!(
            "st1 {{v",
            $a,
            ".4s, v",
            $b,
            ".4s}}, [{",
            $at,
            "}], {",
            $step,
            "}\n"
        )
    };
}
pub(crate) use st1_pair;

#[cfg(test)]
mod tests {
    use super::{RowPlan, MAX_EDGES};
    use core::arch::aarch64::{vmaxvq_u8, vmvnq_u8};

    /// The plan covers every step exactly once: body steps where the window lies
    /// inside the row (the rule step by step), edges elsewhere, in column order.
    #[test]
    fn row_plan_body_is_exactly_the_steps_inside_the_row() {
        for (stride, span, n_vec, tail) in [(1, 8, 2, false), (2, 9, 4, true), (2, 10, 4, false)] {
            for in_w in 4..70 {
                for pad_left in 0..3 {
                    for out_w in 4..(in_w + 2 * pad_left) / stride + 3 {
                        let inside = |i: usize| {
                            let base = (stride * 4 * i) as isize - pad_left as isize;
                            base >= 0 && base as usize + span <= in_w
                        };
                        let steps = out_w / 4;
                        let body: Vec<usize> = (0..steps).filter(|&i| inside(i)).collect();
                        let mut edges: Vec<usize> =
                            (0..steps).filter(|&i| !inside(i)).map(|i| 4 * i).collect();
                        // The overlapping step: a body step if asked for and inside.
                        let x0 = out_w - 4;
                        let tail_inside =
                            (stride * x0 >= pad_left) && stride * x0 - pad_left + span <= in_w;
                        let want_tail = out_w % 4 != 0 && tail && tail_inside;
                        if out_w % 4 != 0 && !want_tail {
                            edges.push(x0);
                        }
                        let plan = RowPlan::new(out_w, in_w, pad_left, stride, (span, tail), n_vec);
                        let case = format!("s{stride} in {in_w} pad {pad_left} out {out_w}");
                        let Some(plan) = plan else {
                            assert!(edges.len() > MAX_EDGES, "{case}");
                            continue;
                        };
                        assert_eq!(plan.body_steps, body.len(), "{case}");
                        assert_eq!(plan.tail, want_tail.then_some(x0), "{case}");
                        assert_eq!(plan.n_body(), body.len() + usize::from(want_tail));
                        if want_tail {
                            assert_eq!(plan.body_x(body.len()), x0, "{case}");
                        }
                        if let Some(&b) = body.first() {
                            assert_eq!(plan.body_x0, 4 * b, "{case}");
                        }
                        let got: Vec<usize> =
                            plan.edges[..plan.n_edges].iter().map(|e| e.x0).collect();
                        assert_eq!(got, edges, "{case}");
                        // The usual border steps, built from `ext`: no gather indices.
                        let ext = pad_left == 1
                            && match (stride, edges.as_slice()) {
                                (1, &[0, r]) => in_w == out_w && out_w >= 8 && r + 4 == out_w,
                                (2, &[0]) => in_w >= 8,
                                _ => false,
                            };
                        assert_eq!(plan.ext, ext, "{case}");
                        // Unbuilt indices are all 0xFF; a built plan with edges has
                        // at least one lane inside the row (an edge wholly in the
                        // padding, far right of a narrow row, gathers nothing).
                        let unbuilt = |e: &super::EdgeStep| {
                            e.idx.iter().all(|&ix| {
                                // SAFETY: register-only operations.
                                unsafe { vmaxvq_u8(vmvnq_u8(ix)) == 0 }
                            })
                        };
                        let edges_built = &plan.edges[..plan.n_edges];
                        if ext {
                            assert!(edges_built.iter().all(unbuilt), "{case}");
                        } else if !edges_built.is_empty() {
                            assert!(!edges_built.iter().all(unbuilt), "{case}");
                        }
                    }
                }
            }
        }
    }
}

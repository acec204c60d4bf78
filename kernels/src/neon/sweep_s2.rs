//! Column sweeps of 3x3 stride-2 windows over a plane, shared by the stride-2
//! depthwise convolution and the 3x3 stride-2 pools.
//!
//! A plane's output columns are covered by 4-wide column steps ([`RowPlan`]); each
//! step sweeps down the plane once, visiting every input row once. Inside the row
//! a step's three taps (columns `2x - pad_left + dx`) come from two `ld2` (even and
//! odd columns at the window start, even columns two later); border steps gather
//! them with `tbl` (or `tbx` with a fill value) from four vectors loaded inside the
//! row. Output row `y` reads input rows `2y - pad_top + dy`: an input row with even
//! `r + pad_top` completes the pending output (`dy = 2`) and starts the next
//! (`dy = 0`), an odd one adds `dy = 1`; rows above and below the plane are padding
//! and are never visited, so the loop has no bounds branches.

use super::common::table4;
use core::arch::aarch64::*;

/// The three taps of one input row for one column step.
pub(crate) trait Taps: Copy {
    /// Taps of the row starting at `row`.
    ///
    /// # Safety
    /// The step's loads must be inside the row (guaranteed by the caller's
    /// [`super::common::RowPlan`]).
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3];
}

/// Column step inside the row: the window starts at column `col`, and columns
/// `col .. col + 10` are inside the row.
#[derive(Clone, Copy)]
pub(crate) struct Body {
    /// Window start column.
    pub col: usize,
}

impl Taps for Body {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3] {
        // SAFETY: reads columns col .. col + 10, inside the row (body condition).
        unsafe {
            let p = row.add(self.col);
            let a = vld2q_f32(p);
            let b = vld2q_f32(p.add(2));
            [a.0, a.1, b.0]
        }
    }
}

/// Border column step: taps gathered from the four vectors at columns `offs`.
/// With `FILL`, padding lanes take `fill` (`tbx`), else zero (`tbl`).
#[derive(Clone, Copy)]
pub(crate) struct Edge<const FILL: bool> {
    /// Column of each loaded vector.
    pub offs: [usize; 4],
    /// Gather indices of the taps.
    pub idx: [uint8x16_t; 3],
    /// Value of padding lanes when `FILL`.
    pub fill: float32x4_t,
}

impl<const FILL: bool> Taps for Edge<FILL> {
    #[inline(always)]
    unsafe fn taps(self, row: *const f32) -> [float32x4_t; 3] {
        // SAFETY: the plan put the four 4-float loads inside the row; the table
        // lookups are register-only.
        unsafe {
            let tab = table4(
                vld1q_f32(row.add(self.offs[0])),
                vld1q_f32(row.add(self.offs[1])),
                vld1q_f32(row.add(self.offs[2])),
                vld1q_f32(row.add(self.offs[3])),
            );
            let fill = vreinterpretq_u8_f32(self.fill);
            self.idx.map(|ix| {
                vreinterpretq_f32_u8(if FILL {
                    vqtbx4q_u8(fill, tab, ix)
                } else {
                    vqtbl4q_u8(tab, ix)
                })
            })
        }
    }
}

/// What a window computes: per input row a reduction of its three taps, per
/// output a fold of its three rows, then a final transform.
pub(crate) trait Op: Copy {
    /// The per-row reduction of the taps.
    type Row: Copy;
    /// Reduces one input row's taps.
    fn reduce(self, t: [float32x4_t; 3]) -> Self::Row;
    /// Value of an output before any row (bias, -inf, 0).
    fn init(self) -> float32x4_t;
    /// Folds the row at window row `dy` into `acc`.
    fn add(self, acc: float32x4_t, row: &Self::Row, dy: usize) -> float32x4_t;
    /// The value stored for output row `y`.
    fn finish(self, v: float32x4_t, y: usize) -> float32x4_t;
}

/// One column sweep: outputs `(y, x0 .. x0 + 4)` for every output row `y`. `src` is
/// input row 0 of the plane, `dst` output `(0, x0)`; input rows
/// `0 .. min(in_h, 2 out_h - pad_top + 1)` are visited.
///
/// # Safety
/// `src + r * in_w` is a row of the plane for `r < in_h` and `t`'s loads stay in
/// the row; `dst + y * out_w .. + 4` is writable for `y < out_h`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn sweep<T: Taps, O: Op>(
    src: *const f32,
    in_w: usize,
    in_h: usize,
    dst: *mut f32,
    out_w: usize,
    out_h: usize,
    pad_top: usize,
    t: T,
    op: O,
) {
    let rows = in_h.min(2 * out_h + 1 - pad_top);
    // SAFETY: loads through `t.taps` of rows r < rows <= in_h; a store of output
    // y happens only for y < out_h (in the loop, y - 1 = (r + pad_top) / 2 - 1 <
    // out_h because r + pad_top <= 2 out_h).
    unsafe {
        // `a` is output `y` (pending); input row r has `q = r + pad_top`.
        let mut a = op.init();
        let mut y = pad_top.saturating_sub(1) / 2;
        let mut r = 0;
        let mut p = src;
        if rows > 0 && pad_top % 2 == 1 {
            // q odd: row dy = 1 of output (q - 1) / 2 = y.
            a = op.add(a, &op.reduce(t.taps(p)), 1);
            p = p.add(in_w);
            r = 1;
        } else if rows > 0 && pad_top == 0 {
            // q = 0: starts output 0, nothing above to complete.
            a = op.add(a, &op.reduce(t.taps(p)), 0);
            p = p.add(in_w);
            r = 1;
            if r < rows {
                a = op.add(a, &op.reduce(t.taps(p)), 1);
                p = p.add(in_w);
                r = 2;
            }
        }
        // Now q = r + pad_top is even and `a` is output y = q / 2 - 1.
        let mut q = dst.add(y * out_w);
        let init = op.init();
        while r + 2 <= rows {
            let x = op.reduce(t.taps(p));
            vst1q_f32(q, op.finish(op.add(a, &x, 2), y));
            a = op.add(init, &x, 0);
            let x = op.reduce(t.taps(p.add(in_w)));
            a = op.add(a, &x, 1);
            p = p.add(2 * in_w);
            q = q.add(out_w);
            y += 1;
            r += 2;
        }
        if r < rows {
            let x = op.reduce(t.taps(p));
            vst1q_f32(q, op.finish(op.add(a, &x, 2), y));
            a = op.add(init, &x, 0);
            y += 1;
        }
        // Outputs past the last visited row read only padding below it.
        if y < out_h {
            vst1q_f32(dst.add(y * out_w), op.finish(a, y));
        }
        for yy in y + 1..out_h {
            vst1q_f32(dst.add(yy * out_w), op.finish(init, yy));
        }
    }
}

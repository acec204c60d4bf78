//! Small planes read row by row into registers, for the 3x3 depthwise conv and the
//! stride-2 average pool: each input row of a plane is loaded once, with masked
//! loads (the lanes past the row are zero), and the tap `dx` of every output lane
//! is permuted out of it ([`SimdExt::permute2`]). Nothing is copied, and no column
//! mask or per-vector edge test is needed: a padding column reads a zero lane, a
//! padding row is a zero row.
//!
//! - Index tables: a row of fewer than two vectors; a table per output vector and
//!   tap column picks lane `stride x + dx - pad_left` (the zero lane past the row
//!   for a padding column).
//! - Split rows (stride 2): a row of up to four vectors, split once into its even
//!   and odd columns (two vectors each); tap `dx` of output `x` is lane
//!   `x + shift` of one of the two, with `shift` -1, 0 or 1 set by
//!   `dx - pad_left`, so two of the three taps need no permute when `pad_left`
//!   is 1.
//!
//! The kernels sum the window rows per tap column first (one FMA or add per row
//! and vector) and permute the column sums, not every row.
//!
//! This replaces, where a row fits, the copy of each plane into a zero-padded
//! buffer, whose loads stall on the copy's stores.
//!
//! The load and store masks of a row's partial vectors are built once per call
//! ([`SimdExt::Prefix`]), not per row: on AVX-512 each masked load and store had
//! rebuilt its `k` mask (shift, decrement, `kmov`) and clamped its count. Intel
//! Xeon (Emerald Rapids), probe at 224x224, new / old paired over 15 alternating
//! rounds: depthwise 56x56 s2 0.93, 28x28 s1 0.93, 14x14 s1 0.87, 7x7 s1 0.88,
//! 28x28 s2 0.91, 14x14 s2 0.88; average pools 56x56 0.95, 28x28 0.94, 14x14
//! 0.86. AVX2 (one vector per row, lane masks): 0.93-1.05, within noise. The
//! network (20 alternating rounds, median of round medians): 0.5x g = 3 at
//! 224x224 0.974 (quartiles 0.932-0.993); 2x 0.978 (10 rounds, 0.86-1.02).

use super::simd::{u32_table, Level, SimdExt};
use crate::PlaneGeom;

/// Expands `$go!(m)` for the path's mode `$mode` ([`RowTaps::mode`]) as a
/// literal, so a kernel generic over the mode is compiled for each of 0..=3.
macro_rules! by_mode {
    ($mode:expr, $go:ident) => {
        match $mode {
            0 => $go!(0),
            1 => $go!(1),
            2 => $go!(2),
            _ => $go!(3),
        }
    };
}
pub(crate) use by_mode;

/// Whether rows of geometry `g` take the path with `stride` at `lanes` floats per
/// vector: an input row shorter than two vectors (stride 1: lane `2 lanes - 1` is
/// then past it) or of at most four (stride 2, `pad_left <= 2`), and an output row
/// of at most two vectors with AVX-512, one with fewer lanes. (With AVX2 a
/// two-source permute costs four instructions: probe, us, copy path / this one,
/// 120 x 14x14 stride 1 (two output vectors) 9.8 / 13.6, 240 x 7x7 8.7 / 8.3.)
pub(crate) fn fits(g: &PlaneGeom, stride: usize, lanes: usize) -> bool {
    let out_vecs = if lanes >= 16 { 2 } else { 1 };
    let row_fits = match stride {
        1 => g.in_w < 2 * lanes,
        2 => g.in_w < 2 * lanes || (g.in_w <= 4 * lanes && g.pad_left <= 2),
        _ => false,
    };
    row_fits && g.out_w <= out_vecs * lanes
}

/// The best level of this CPU if rows of geometry `g` [`fit`](fits) it.
pub(crate) fn best_level(g: &PlaneGeom, stride: usize) -> Option<Level> {
    let best = Level::best();
    fits(g, stride, best.lanes()).then_some(best)
}

/// One input row in registers: stride 1 `[x0, x1, 0, 0]` (columns `0..2 LANES`),
/// stride 2 `[even0, even1, odd0, odd1]` (even columns `0, 2, ..`, then odd).
pub(crate) type Row<S> = [<S as pulp::Simd>::f32s; 4];

/// Stride 2 with `pad_left = m - 1` (the path's mode `m`, see [`RowTaps::mode`]):
/// the column parity tap `dx` reads (0 even, 1 odd) and its lane shift (-1, 0, 1).
const fn split(m: usize, dx: usize) -> (usize, isize) {
    let k = dx as isize - (m as isize - 1);
    (k.rem_euclid(2) as usize, k.div_euclid(2))
}

/// The index tables and row geometry of one plane shape at level `S`. The kernels
/// run generic over the path's mode `M` ([`RowTaps::mode`]), so every choice
/// between columns and shifts is made at compile time.
pub(crate) struct RowTaps<S: SimdExt> {
    /// Stride 1: per output vector and tap column, the lane of the row's two
    /// vectors that each output lane reads.
    idx: [[S::u32s; 3]; 2],
    /// Lane tables of a shift by -1 (over the previous and the current vector)
    /// and by +1 (over the current and the next).
    back: S::u32s,
    fwd: S::u32s,
    /// Output vectors per row (1 or 2).
    pub nv: usize,
    /// Whether the second vector a tap column reads can be nonzero.
    pub two: bool,
    /// Floats of an input row in each of its (up to) four vectors, and their
    /// load masks.
    part_n: [usize; 4],
    part_m: [S::Prefix; 4],
    /// Floats of output vector 0 and 1 in an output row, and their store masks.
    keep: [usize; 2],
    keep_m: [S::Prefix; 2],
    out_w: usize,
    /// Whether stride-2 rows are split into even and odd columns.
    split: bool,
    stride: usize,
    pad_left: usize,
    pad_top: usize,
    in_h: usize,
    in_w: usize,
}

impl<S: SimdExt> RowTaps<S> {
    /// The tables for geometry `g` with `stride`, if it [`fits`]. Stride 2 splits
    /// its rows into even and odd columns when they are longer than `split_above`
    /// floats (or too long for the index tables), else it reads them through index
    /// tables like stride 1: a split costs a permute per row vector, an index
    /// table one per tap column and output vector.
    #[inline(always)]
    pub fn new(simd: S, g: &PlaneGeom, stride: usize, split_above: usize) -> Option<Self> {
        let l = S::F32_LANES;
        if !fits(g, stride, l) {
            return None;
        }
        let split = stride == 2 && (g.in_w > split_above || g.in_w >= 2 * l);
        if split && g.pad_left > 2 {
            return None;
        }
        let zero_lane = (2 * l - 1) as u32;
        let mut lanes = [[[zero_lane; 16]; 3]; 2];
        if !split {
            for (v, per_dx) in lanes.iter_mut().enumerate() {
                for (dx, t) in per_dx.iter_mut().enumerate() {
                    for (j, lane) in t.iter_mut().enumerate().take(l) {
                        let col = (stride * (v * l + j) + dx).wrapping_sub(g.pad_left);
                        if col < g.in_w {
                            *lane = col as u32;
                        }
                    }
                }
            }
        }
        let t = |v: usize, dx: usize| u32_table::<S>(&lanes[v][dx]);
        let idx = [[t(0, 0), t(0, 1), t(0, 2)], [t(1, 0), t(1, 1), t(1, 2)]];
        let part_n = [0, 1, 2, 3].map(|i| g.in_w.saturating_sub(i * l).min(l));
        let keep = [0, 1].map(|v| g.out_w.saturating_sub(v * l).min(l));
        let back: [u32; 16] = core::array::from_fn(|j| (l - 1 + j) as u32);
        let fwd: [u32; 16] = core::array::from_fn(|j| (j + 1) as u32);
        Some(RowTaps {
            idx,
            back: u32_table::<S>(&back),
            fwd: u32_table::<S>(&fwd),
            nv: g.out_w.div_ceil(l),
            two: if split { g.in_w > 2 * l } else { g.in_w > l },
            part_n,
            part_m: part_n.map(|n| simd.prefix(n)),
            keep,
            keep_m: keep.map(|n| simd.prefix(n)),
            out_w: g.out_w,
            split,
            stride,
            pad_left: g.pad_left,
            pad_top: g.pad_top,
            in_h: g.in_h,
            in_w: g.in_w,
        })
    }

    /// The mode: 0 for rows read through index tables, `1 + pad_left` for split
    /// stride-2 rows.
    pub fn mode(&self) -> usize {
        if self.split {
            1 + self.pad_left
        } else {
            0
        }
    }

    /// Vector `i` of input row `row` (`in_w` floats), zero past the row.
    #[inline(always)]
    ///
    /// # Safety
    /// `row .. row + in_w` must be readable.
    unsafe fn part(&self, simd: S, row: *const f32, i: usize) -> S::f32s {
        let n = self.part_n[i];
        if n == 0 {
            return simd.splat_f32s(0.0);
        }
        // SAFETY: floats i l .. i l + n are inside the row (caller's contract), the
        // lanes of part_m[i].
        unsafe { simd.load_masked(row.add(i * S::F32_LANES), self.part_m[i]) }
    }

    /// Stores output vector `v` of output row `y` in `plane` (rows of `out_w`
    /// floats): the row's floats alone where a masked store is cheap
    /// ([`SimdExt::MASKED_STORE`], AVX-512), else the whole vector where it stays
    /// inside the plane (its extra lanes land in rows written later); the masks
    /// are built once per call. (A 7x7 depthwise conv with AVX2 ran 1.6x slower
    /// with `vmaskmovps` stores; with AVX-512 masked stores beat whole ones, 240
    /// x 7x7: 6.2 against 6.8 us.)
    /// `plane` holds the `out_h` rows ([`super::rows::planes`] gives such
    /// planes); a vector that would end past it is not stored.
    #[inline(always)]
    pub fn store(&self, simd: S, plane: &mut [f32], y: usize, v: usize, val: S::f32s) {
        let (l, len) = (S::F32_LANES, plane.len());
        let o = y * self.out_w + v * l;
        if o + self.keep[v] > len {
            return;
        }
        // SAFETY: the keep[v] floats of keep_m[v] from o are inside the plane, a
        // whole vector when o + l <= len.
        unsafe {
            let p = plane.as_mut_ptr().add(o);
            if !S::MASKED_STORE && o + l <= len {
                super::simd::store::<S>(p, val);
            } else {
                simd.store_masked(p, val, self.keep_m[v]);
            }
        }
    }

    /// Input row `iy` of a plane of `in_h` rows of `in_w` floats at `plane` as a
    /// [`Row`]; zero for a padding row (`iy` outside the plane, wrapped).
    ///
    /// # Safety
    /// `plane .. plane + in_h in_w` must be readable.
    #[inline(always)]
    unsafe fn row<const M: usize>(&self, simd: S, plane: *const f32, iy: usize) -> Row<S> {
        let zero = simd.splat_f32s(0.0);
        if iy >= self.in_h {
            return [zero; 4];
        }
        // SAFETY: row iy < in_h of the plane (caller's contract).
        let row = unsafe { plane.add(iy * self.in_w) };
        // SAFETY: as above, for every part.
        let (r0, r1) = unsafe { (self.part(simd, row, 0), self.part(simd, row, 1)) };
        if M == 0 {
            return [r0, r1, zero, zero];
        }
        let (e0, o0) = simd.split_even_odd(r0, r1);
        let (e1, o1) = if self.two {
            // SAFETY: as above.
            unsafe { simd.split_even_odd(self.part(simd, row, 2), self.part(simd, row, 3)) }
        } else {
            (zero, zero)
        };
        [e0, e1, o0, o1]
    }

    /// The window rows of output row 0 of `plane`; [`Window::advance`] moves to
    /// the next output row.
    #[inline(always)]
    pub fn window<'a, const M: usize>(&'a self, simd: S, plane: &'a [f32]) -> Window<'a, S, M> {
        let top = self.pad_top.wrapping_neg();
        let plane = &plane[..self.in_h * self.in_w];
        let p = plane.as_ptr();
        // SAFETY: `plane` holds in_h in_w floats.
        let rows = unsafe {
            [
                self.row::<M>(simd, p, top),
                self.row::<M>(simd, p, top.wrapping_add(1)),
                self.row::<M>(simd, p, top.wrapping_add(2)),
            ]
        };
        Window {
            t: self,
            plane,
            next: top.wrapping_add(3),
            rows,
        }
    }

    /// The two vectors of `row` that tap column `dx` reads.
    #[inline(always)]
    pub fn stream<const M: usize>(&self, row: &Row<S>, dx: usize) -> (S::f32s, S::f32s) {
        if M == 0 || split(M, dx).0 == 0 {
            (row[0], row[1])
        } else {
            (row[2], row[3])
        }
    }

    /// Tap column `dx` of output vector `v` from its [`Self::stream`] of a row (or
    /// of a sum of rows).
    #[inline(always)]
    pub fn tap<const M: usize>(
        &self,
        simd: S,
        (a, b): (S::f32s, S::f32s),
        v: usize,
        dx: usize,
    ) -> S::f32s {
        if M == 0 {
            return simd.permute2(a, b, self.idx[v][dx]);
        }
        let zero = simd.splat_f32s(0.0);
        let cur = if v == 0 { a } else { b };
        match split(M, dx).1 {
            0 => cur,
            -1 => simd.permute2(if v == 0 { zero } else { a }, cur, self.back),
            _ => simd.permute2(cur, if v == 0 { b } else { zero }, self.fwd),
        }
    }
}

/// The three window rows of one output row of a plane ([`RowTaps::window`]);
/// every input row is loaded once per plane.
pub(crate) struct Window<'a, S: SimdExt, const M: usize> {
    t: &'a RowTaps<S>,
    /// The plane, exactly `in_h in_w` floats.
    plane: &'a [f32],
    /// The input row after the window's last (wrapping: rows above the plane are
    /// padding).
    next: usize,
    /// Window rows 0, 1, 2.
    pub rows: [Row<S>; 3],
}

impl<S: SimdExt, const M: usize> Window<'_, S, M> {
    /// Slides the window down by the stride (1 or 2 new rows).
    #[inline(always)]
    pub fn advance(&mut self, simd: S) {
        let (t, p) = (self.t, self.plane.as_ptr());
        // SAFETY: `plane` holds in_h in_w floats (sliced so by `window`).
        unsafe {
            if t.stride == 1 {
                self.rows = [self.rows[1], self.rows[2], t.row::<M>(simd, p, self.next)];
                self.next = self.next.wrapping_add(1);
            } else {
                let a = t.row::<M>(simd, p, self.next);
                let b = t.row::<M>(simd, p, self.next.wrapping_add(1));
                self.rows = [self.rows[2], a, b];
                self.next = self.next.wrapping_add(2);
            }
        }
    }
}

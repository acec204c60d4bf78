//! Small planes read row by row into registers, for the 3x3 depthwise conv and the
//! average pool (stride 1 or 2): an input row of fewer than two vectors is loaded
//! once with masked loads (the lanes past the row are zero), and the tap `dx` of
//! every output lane is picked from it with one two-source lane permute
//! ([`SimdExt::permute2`]) by a per-geometry index table. A padding column indexes
//! the last lane of the second vector, which is past the row and so zero; a padding
//! row is skipped. Nothing is copied, and no column mask or per-vector edge test
//! is needed.
//!
//! This replaces, where a row fits, the copy of each plane into a zero-padded
//! buffer, whose loads stall on the copy's stores.

use super::simd::{Level, SimdExt};
use crate::PlaneGeom;

/// Whether rows of geometry `g` take the path at `lanes` floats per vector: an
/// input row shorter than two vectors (so lane `2 lanes - 1` is past it) and an
/// output row of at most two vectors with AVX-512, one with fewer lanes. (With
/// AVX2 a two-source permute costs four instructions: probe, us, old path / this
/// one, 120 x 14x14 stride 1 (two output vectors) 9.8 / 13.6, 240 x 7x7 8.7 / 8.3,
/// 240 x 14x14 stride 2 13.6 / 12.2.)
pub(crate) fn fits(g: &PlaneGeom, lanes: usize) -> bool {
    let out_vecs = if lanes >= 16 { 2 } else { 1 };
    g.in_w < 2 * lanes && g.out_w <= out_vecs * lanes
}

/// The best level of this CPU if rows of geometry `g` [`fit`](fits) it.
pub(crate) fn best_level(g: &PlaneGeom) -> Option<Level> {
    let best = Level::best();
    fits(g, best.lanes()).then_some(best)
}

/// Stores output vector `v` at index `o` of `plane`, of which `keep` floats belong
/// to its row: those alone where a masked store is cheap ([`SimdExt::MASKED_STORE`],
/// AVX-512), else the whole vector where it stays inside the plane (its extra
/// lanes land in rows written later). (A 7x7 depthwise conv with AVX2 ran 1.6x
/// slower with `vmaskmovps` stores; with AVX-512 masked stores beat whole ones,
/// 240 x 7x7: 6.2 against 6.8 us.)
#[inline(always)]
pub(crate) fn store<S: SimdExt>(simd: S, plane: &mut [f32], o: usize, keep: usize, v: S::f32s) {
    let l = S::F32_LANES;
    let keep = keep.min(l).min(plane.len().saturating_sub(o));
    if keep == 0 {
        return;
    }
    let p = plane[o..].as_mut_ptr();
    // SAFETY: o < plane.len() (keep > 0); a whole vector only when o + l <=
    // plane.len(), else `keep` floats from o, inside the plane.
    unsafe {
        if S::MASKED_STORE || o + l > plane.len() {
            simd.store_prefix(p, v, keep);
        } else {
            super::simd::store::<S>(p, v);
        }
    }
}

/// The index tables and row geometry of one plane shape at level `S`.
pub(crate) struct RowTaps<S: SimdExt> {
    /// Per output vector and tap column, the lane of a row's two vectors that each
    /// output lane reads.
    idx: [[S::u32s; 3]; 2],
    /// Output vectors per row (1 or 2).
    pub nv: usize,
    /// Whether an input row reaches its second vector.
    pub hi: bool,
    /// Whether to sum the window rows per tap column first (stride 1, or rows of
    /// one vector) rather than permute every tap of every row.
    pub vertical: bool,
    stride: usize,
    pad_top: usize,
    in_h: usize,
    in_w: usize,
}

impl<S: SimdExt> RowTaps<S> {
    /// The tables for geometry `g` with `stride` (1 or 2), if it [`fits`].
    #[inline(always)]
    pub fn new(g: &PlaneGeom, stride: usize) -> Option<Self> {
        let l = S::F32_LANES;
        if !fits(g, l) {
            return None;
        }
        let zero_lane = (2 * l - 1) as u32;
        let mut lanes = [[[zero_lane; 16]; 3]; 2];
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
        // SAFETY: each table holds 16 >= LANES u32s; `u32s` is plain data.
        let idx = lanes
            .map(|per_dx| per_dx.map(|t| unsafe { t.as_ptr().cast::<S::u32s>().read_unaligned() }));
        Some(RowTaps {
            idx,
            nv: g.out_w.div_ceil(l),
            hi: g.in_w > l,
            vertical: stride == 1 || g.in_w <= l,
            stride,
            pad_top: g.pad_top,
            in_h: g.in_h,
            in_w: g.in_w,
        })
    }

    /// Input row `iy` of `plane` (`in_h` rows of `in_w`) as two vectors, zero past
    /// the row; zero for a padding row (`iy` outside the plane, wrapped).
    #[inline(always)]
    fn row(&self, simd: S, plane: &[f32], iy: usize) -> (S::f32s, S::f32s) {
        let zero = simd.splat_f32s(0.0);
        if iy >= self.in_h {
            return (zero, zero);
        }
        let l = S::F32_LANES;
        let row = &plane[iy * self.in_w..][..self.in_w];
        let lo_n = self.in_w.min(l);
        // SAFETY: the loads read the row's first `lo_n` and (when the row is
        // longer than a vector) the next `in_w - lo_n` floats, all inside `row`.
        unsafe {
            let lo = simd.load_prefix(row.as_ptr(), lo_n);
            let hi = if self.hi {
                simd.load_prefix(row.as_ptr().add(lo_n), self.in_w - lo_n)
            } else {
                zero
            };
            (lo, hi)
        }
    }

    /// The window rows of output row 0 of `plane`; [`Window::advance`] moves to
    /// the next output row.
    #[inline(always)]
    pub fn window<'a>(&'a self, simd: S, plane: &'a [f32]) -> Window<'a, S> {
        let top = self.pad_top.wrapping_neg();
        let rows = [
            self.row(simd, plane, top),
            self.row(simd, plane, top.wrapping_add(1)),
            self.row(simd, plane, top.wrapping_add(2)),
        ];
        Window {
            t: self,
            plane,
            next: top.wrapping_add(3),
            rows,
        }
    }

    /// Tap column `dx` of output vector `v` from a row of [`Self::row`].
    #[inline(always)]
    pub fn tap(&self, simd: S, (lo, hi): (S::f32s, S::f32s), v: usize, dx: usize) -> S::f32s {
        simd.permute2(lo, hi, self.idx[v][dx])
    }
}

/// The three window rows of one output row of a plane, as row pairs of vectors
/// ([`RowTaps::window`]); every input row is loaded once per plane.
pub(crate) struct Window<'a, S: SimdExt> {
    t: &'a RowTaps<S>,
    plane: &'a [f32],
    /// The input row after the window's last (wrapping: rows above the plane are
    /// padding).
    next: usize,
    /// Window rows 0, 1, 2.
    pub rows: [(S::f32s, S::f32s); 3],
}

impl<S: SimdExt> Window<'_, S> {
    /// Slides the window down by the stride (1 or 2 new rows).
    #[inline(always)]
    pub fn advance(&mut self, simd: S) {
        let t = self.t;
        if t.stride == 1 {
            self.rows = [
                self.rows[1],
                self.rows[2],
                t.row(simd, self.plane, self.next),
            ];
            self.next = self.next.wrapping_add(1);
        } else {
            let a = t.row(simd, self.plane, self.next);
            let b = t.row(simd, self.plane, self.next.wrapping_add(1));
            self.rows = [self.rows[2], a, b];
            self.next = self.next.wrapping_add(2);
        }
    }
}

//! 3x3 depthwise convolution, stride 1 and 2, pads 0..=2 top/left and any
//! bottom/right, bias and ReLU.
//!
//! Per plane (or band of rows of a large plane), every input row is copied once into
//! padded scratch planes (split by row and column parity for stride 2), laid out so
//! that each of the 9 taps of every output is at a fixed offset from it (see
//! [`super::rows::Flat`]). Borders then cost nothing extra, and the whole band is
//! one flat vector loop: 9 loads and 9 FMAs (three chains of three) per output
//! vector, weights and bias in registers, no per-row branches; the real columns are
//! then copied out. Each input row is read from memory once and each output row
//! written once; the scratch stays in L1 (bands of about 24 KB).
//!
//! Stride 1 with one padding column each side (every ShuffleNet stride-1 unit)
//! runs output row by output row where that pays ([`super::dwconv3x3s1p1_rows`]:
//! three aligned loads per output vector instead of nine unaligned ones, the side
//! taps permuted out of per-row sums; 1.5-2x the flat path at AVX-512), and so
//! does stride 2 with left padding 1 ([`super::dwconv3x3s2p1_rows`]: two loads and
//! one even/odd split per row and output vector, at every level).
//!
//! Planes whose input rows are shorter than two vectors skip the copies: their
//! rows are loaded into registers and the taps permuted out of them
//! ([`super::small_plane`]). Probe (AVX-512 dispatch, Zen 4, best of N, us, copy
//! paths / register rows): stride 1, 60 x 28x28 15.9 / 11.3-11.9, 120 x 14x14 9.8 /
//! 5.8-6.2, 240 x 7x7 8.7 / 6.2-6.7; stride 2, 120 x 28x28 20.0 / 8.6-9.3, 240 x
//! 14x14 13.4 / 6.7-7.6.
//!
//! Measured (AVX2, best of 300, Zen 3): stride 1, 60 x 28x28: 28 GFLOP/s; 60 x
//! 90x160: 33; stride 2, 60 x 56x56: 16. The flat loop itself runs near the FMA
//! bound; the rest is the copy in and out (the stride-2 copy also splits columns),
//! which a row-by-row variant with two output rows per pass did not beat (it was
//! 11-20 GFLOP/s: per-row loop overhead on 28-wide rows).
//!
//! Also dropped (Intel Xeon, Emerald Rapids, 2026-12-01): stride 1 over the plane
//! as one flat run with no padding columns (every lane used, 9 unaligned loads
//! per vector, the side taps masked at the row ends): 1.1-1.8x slower than the
//! row and small-plane paths (240 x 7x7 7.3 against 6.4-6.7 us, 120 x 14x14
//! 9.9-10.8 against 6.2-6.5, 60 x 28x28 19.2 against 10.6-11.0).

use super::dwconv3x3s1p1_rows::{self, Rows};
use super::dwconv3x3s2p1_rows;
use super::rows::{copy_row, planes, store_in_plane, Flat, PaddedPlane};
use super::simd::{load, store, Kernel, Level, SimdExt};
use super::small_plane::{self, RowTaps};
use crate::scratch::{self, Scratch};
use crate::{Depthwise3x3, KernelError, PlaneGeom};
use std::ops::Range;

/// Convolves planes `channels` with the best level of this CPU when the plane's
/// rows fit in registers (the small-plane path) or the row-by-row stride-1 path
/// applies (stride 1, one padding column each side), else the best level for the
/// output width ([`Level::for_rows`]); input plane `c` at `c * in_stride`, output
/// plane `c` at `(c - channels.start) * out_stride`.
pub fn dwconv3x3(
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    let level = small_plane::best_level(g, p.stride).unwrap_or_else(|| {
        if dwconv3x3s1p1_rows::fits(p, g) || dwconv3x3s2p1_rows::fits(p, g) {
            Level::best()
        } else {
            Level::for_rows(g.out_w)
        }
    });
    dwconv3x3_at(level, p, g, input, output, channels)
}

/// [`dwconv3x3`] with a chosen instruction-set level.
pub fn dwconv3x3_at(
    level: Level,
    p: &Depthwise3x3,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &channels)?;
    if channels.is_empty() || g.out_h == 0 || g.out_w == 0 {
        return Ok(());
    }
    let mut op = Op {
        p,
        g,
        input,
        output,
        channels,
    };
    if small_plane::fits(g, p.stride, level.lanes()) {
        // A kernel of its own (16 monomorphised loops), so the copy paths'
        // function compiles as it did without it.
        match level.run(Small(op)) {
            Some(rest) => op = rest,
            None => return Ok(()),
        }
    }
    if dwconv3x3s1p1_rows::fits(op.p, op.g) && dwconv3x3s1p1_rows::pays(level, op.g) {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = op;
        level.run(Rows {
            p,
            g,
            input,
            output,
            channels,
        });
        return Ok(());
    }
    if dwconv3x3s2p1_rows::fits(op.p, op.g) {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = op;
        level.run(dwconv3x3s2p1_rows::Rows {
            p,
            g,
            input,
            output,
            channels,
        });
        return Ok(());
    }
    level.run(op);
    Ok(())
}

/// The small-plane path of an [`Op`] ([`small_plane`]); gives the op back if its
/// rows do not fit the level after all.
struct Small<'a, 'b>(Op<'a, 'b>);

impl<'a, 'b> Kernel for Small<'a, 'b> {
    type Output = Option<Op<'a, 'b>>;

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) -> Self::Output {
        let op = self.0;
        // Stride 2 splits rows of more than one vector: the tables would need the
        // column sums of both vectors (18 FMAs per output vector, not 9).
        let Some(t) = RowTaps::<S>::new(simd, op.g, op.p.stride, S::F32_LANES) else {
            return Some(op);
        };
        macro_rules! go {
            ($m:literal) => {
                match (t.nv, op.p.relu) {
                    (1, false) => op.run_small::<S, $m, 1, false>(simd, &t),
                    (1, true) => op.run_small::<S, $m, 1, true>(simd, &t),
                    (_, false) => op.run_small::<S, $m, 2, false>(simd, &t),
                    (_, true) => op.run_small::<S, $m, 2, true>(simd, &t),
                }
            };
        }
        small_plane::by_mode!(t.mode(), go);
        None
    }
}

struct Op<'a, 'b> {
    p: &'a Depthwise3x3<'b>,
    g: &'a PlaneGeom,
    input: &'a [f32],
    output: &'a mut [f32],
    channels: Range<usize>,
}

/// The flat loop: `len` output positions (whole vectors; the scratch has room)
/// from the prepared input at `src` with tap offsets `taps`.
///
/// # Safety
/// `src + taps[t] + q .. + LANES` is readable for every tap and every `q < len`
/// (rounded up to a vector); `out .. out + len` (rounded up) is writable.
#[inline(always)]
unsafe fn flat<S: SimdExt, const RELU: bool>(
    simd: S,
    src: *const f32,
    taps: &[usize; 9],
    w: &[S::f32s; 9],
    bias: S::f32s,
    out: *mut f32,
    len: usize,
) {
    let l = S::F32_LANES;
    let p: [*const f32; 9] = core::array::from_fn(|t| src.wrapping_add(taps[t]));
    let mut q = 0;
    while q < len {
        // SAFETY: the caller's contract.
        unsafe {
            // (A macro, not a closure: a closure would be compiled without the
            // level's target features.)
            macro_rules! x {
                ($t:expr) => {
                    load::<S>(p[$t].add(q))
                };
            }
            // Three partial sums (one per kernel row): chains of 3 FMAs.
            let mut a0 = simd.mul_add_e_f32s(w[0], x!(0), bias);
            let mut a1 = simd.mul_f32s(w[3], x!(3));
            let mut a2 = simd.mul_f32s(w[6], x!(6));
            a0 = simd.mul_add_e_f32s(w[1], x!(1), a0);
            a1 = simd.mul_add_e_f32s(w[4], x!(4), a1);
            a2 = simd.mul_add_e_f32s(w[7], x!(7), a2);
            a0 = simd.mul_add_e_f32s(w[2], x!(2), a0);
            a1 = simd.mul_add_e_f32s(w[5], x!(5), a1);
            a2 = simd.mul_add_e_f32s(w[8], x!(8), a2);
            let mut a = simd.add_f32s(simd.add_f32s(a0, a1), a2);
            if RELU {
                a = simd.relu(a);
            }
            store::<S>(out.add(q), a);
        }
        q += l;
    }
}

/// Whether the direct stride-1 path applies: one padding column each side
/// (`out_w == in_w`, `pad_left == 1`), any rows.
fn direct_s1(p: &Depthwise3x3, g: &PlaneGeom) -> bool {
    p.stride == 1 && g.pad_left == 1 && g.out_w == g.in_w
}

/// Column masks of the direct stride-1 path for rows of `wd` floats: entry `i` of
/// the left table is all-ones unless `i % wd == 0` (the left tap is padding), of
/// the right table unless `i % wd == wd - 1`; `wd + lanes` entries each, so a
/// vector load at any `i < wd` covers its `lanes` positions.
fn column_masks(wd: usize, lanes: usize) -> (Scratch<f32>, Scratch<f32>) {
    let ones = f32::from_bits(u32::MAX);
    let mut left = scratch::take(wd + lanes, ones);
    let mut right = scratch::take(wd + lanes, ones);
    let (n, step) = (wd + lanes, wd.max(1));
    for i in (0..n).step_by(step) {
        left[i] = 0.0;
    }
    for i in (step - 1..n).step_by(step) {
        right[i] = 0.0;
    }
    (left, right)
}

/// Bitwise `a & m` (m: all-ones or zero lanes).
#[inline(always)]
fn and_bits<S: SimdExt>(simd: S, a: S::f32s, m: S::f32s) -> S::f32s {
    simd.transmute_f32s_u32s(
        simd.and_u32s(simd.transmute_u32s_f32s(a), simd.transmute_u32s_f32s(m)),
    )
}

/// One output vector of the direct stride-1 path: `x` points at the input
/// position of tap (row 0, column 1) of the vector's first output; input rows are
/// `wd` floats apart. The left and right column sums are masked (bitwise, so a
/// non-finite neighbour in the previous or next row cannot leak in) by `ml`, `mr`.
///
/// # Safety
/// `x - 1 .. x + 2 * wd + 1 + LANES` is readable.
#[inline(always)]
unsafe fn s1_vec<S: SimdExt, const RELU: bool>(
    simd: S,
    x: *const f32,
    wd: usize,
    w: &[S::f32s; 9],
    bias: S::f32s,
    ml: S::f32s,
    mr: S::f32s,
) -> S::f32s {
    // SAFETY: the caller's contract covers every tap.
    unsafe {
        let (r0, r1, r2) = (x, x.add(wd), x.add(2 * wd));
        let mut mid = simd.mul_add_e_f32s(w[1], load::<S>(r0), bias);
        let mut left = simd.mul_f32s(w[0], load::<S>(r0.sub(1)));
        let mut right = simd.mul_f32s(w[2], load::<S>(r0.add(1)));
        mid = simd.mul_add_e_f32s(w[4], load::<S>(r1), mid);
        left = simd.mul_add_e_f32s(w[3], load::<S>(r1.sub(1)), left);
        right = simd.mul_add_e_f32s(w[5], load::<S>(r1.add(1)), right);
        mid = simd.mul_add_e_f32s(w[7], load::<S>(r2), mid);
        left = simd.mul_add_e_f32s(w[6], load::<S>(r2.sub(1)), left);
        right = simd.mul_add_e_f32s(w[8], load::<S>(r2.add(1)), right);
        let left = and_bits(simd, left, ml);
        let right = and_bits(simd, right, mr);
        let mut a = simd.add_f32s(simd.add_f32s(mid, left), right);
        if RELU {
            a = simd.relu(a);
        }
        a
    }
}

/// The direct stride-1 path over one plane: output positions are flat
/// (`q = y * wd + x`), so a vector may span rows; its taps are at fixed offsets
/// from the input position `q - pad_top * wd` and the column masks drop the taps
/// that wrap to the neighbouring row. Vectors whose taps all lie inside the plane
/// read it in place; the few at the top and bottom (whose taps reach the padding
/// rows) read a zero-padded copy of the rows they need. Output goes straight to
/// the output plane (the last partial vector through a masked copy).
struct S1<'a, S: SimdExt> {
    simd: S,
    wd: usize,
    in_hw: usize,
    out_hw: usize,
    /// `pad_top * wd`.
    shift: usize,
    ml: &'a [f32],
    mr: &'a [f32],
}

impl<S: SimdExt> S1<'_, S> {
    /// Output vectors `q0..q1` (multiples of the lanes; `q1` may pass `out_hw`)
    /// reading input position `i` at `base + i` (wrapping pointer arithmetic: only
    /// the positions the vectors read need to be valid).
    ///
    /// # Safety
    /// `base + i` is readable for every `i` in `q0 - shift - 1 .. q1 - shift + 2 *
    /// wd + 1`; `out .. out + out_hw` is writable.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn range<const RELU: bool>(
        &self,
        base: *const f32,
        q0: usize,
        q1: usize,
        w: &[S::f32s; 9],
        bias: S::f32s,
        out: *mut f32,
    ) {
        let (simd, wd, l) = (self.simd, self.wd, S::F32_LANES);
        let mut r = q0 % wd;
        let mut q = q0;
        while q < q1 {
            // SAFETY: r < wd and the tables hold wd + l entries; the caller's
            // contract covers the taps and the output.
            unsafe {
                let ml = load::<S>(self.ml.as_ptr().add(r));
                let mr = load::<S>(self.mr.as_ptr().add(r));
                let x = base.wrapping_add(q).wrapping_sub(self.shift);
                let v = s1_vec::<S, RELU>(simd, x, wd, w, bias, ml, mr);
                if q + l <= self.out_hw {
                    store::<S>(out.add(q), v);
                } else {
                    super::simd::store_first::<S>(out.add(q), v, self.out_hw - q);
                }
            }
            q += l;
            if wd >= l {
                r += l;
                if r >= wd {
                    r -= wd;
                }
            } else {
                r = q % wd;
            }
        }
    }

    /// Output vectors `q0..q1` through a zero-padded copy of the input positions
    /// they read, in `buf` (zero outside the input positions, which are all this
    /// writes: the same `buf` serves the same `q0..q1` of every plane).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn padded<const RELU: bool>(
        &self,
        plane: &[f32],
        buf: &mut [f32],
        q0: usize,
        q1: usize,
        w: &[S::f32s; 9],
        bias: S::f32s,
        out: &mut [f32],
    ) {
        if q0 >= q1 {
            return;
        }
        // Input positions lo .. hi (may start before 0 and end past the plane).
        let lo = q0 as isize - self.shift as isize - 1;
        let hi = q1 as isize - self.shift as isize + 2 * self.wd as isize + 1;
        let buf = &mut buf[..(hi - lo) as usize];
        let (a, b) = (lo.max(0), hi.min(self.in_hw as isize));
        if a < b {
            let (a, b) = (a as usize, b as usize);
            let at = (a as isize - lo) as usize;
            copy_row(self.simd, &plane[a..b], &mut buf[at..at + b - a]);
        }
        let base = buf.as_ptr().wrapping_offset(-lo);
        // SAFETY: `buf` holds input positions lo..hi, which cover the taps of
        // vectors q0..q1; `out` holds out_hw floats.
        unsafe { self.range::<RELU>(base, q0, q1, w, bias, out.as_mut_ptr()) };
    }
}

impl Kernel for Op<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run<S: SimdExt>(self, simd: S) {
        if direct_s1(self.p, self.g) {
            return self.run_s1(simd);
        }
        if self.p.stride == 2 {
            return self.run_s2(simd);
        }
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        let mut fl = Flat::new(p.stride, g, S::F32_LANES, 0.0, false);
        let taps = fl.taps();
        for (c, plane, out_plane) in planes(g, input, output, channels.clone()) {
            let mut w = [simd.splat_f32s(0.0); 9];
            for (wv, &x) in w.iter_mut().zip(&p.weights[c * 9..c * 9 + 9]) {
                *wv = simd.splat_f32s(x);
            }
            let bias = simd.splat_f32s(p.bias[c]);
            let mut y0 = 0;
            while y0 < g.out_h {
                let rows = fl.band().min(g.out_h - y0);
                fl.load(simd, plane, y0, rows);
                let len = fl.flat_len(rows);
                let src = fl.src();
                let out = fl.out().as_mut_ptr();
                // SAFETY: Flat's planes hold every tap of the flat positions of
                // `rows` band rows plus a vector of slack, its output scratch
                // `band * wq + LANES` floats.
                unsafe {
                    if p.relu {
                        flat::<S, true>(simd, src, &taps, &w, bias, out, len);
                    } else {
                        flat::<S, false>(simd, src, &taps, &w, bias, out, len);
                    }
                }
                fl.store(simd, out_plane, y0, rows, None);
                y0 += rows;
            }
        }
    }
}

impl Op<'_, '_> {
    /// The small-plane path ([`small_plane`]): per output row and tap column, the
    /// window rows' weighted sum (3 FMAs per row vector), permuted into each of the
    /// `NV` output vectors.
    #[inline(always)]
    fn run_small<S: SimdExt, const M: usize, const NV: usize, const RELU: bool>(
        self,
        simd: S,
        t: &RowTaps<S>,
    ) {
        let (p, g) = (self.p, self.g);
        for (c, plane, out_plane) in planes(g, self.input, self.output, self.channels) {
            let (w, bias) = channel_taps(simd, p, c);
            let mut win = t.window::<M>(simd, plane);
            for y in 0..g.out_h {
                let mut acc = [bias; NV];
                for dx in 0..3 {
                    // The tap column's sum over the window rows, then its permute
                    // per output vector.
                    let zero = simd.splat_f32s(0.0);
                    let mut col = (zero, zero);
                    for (dy, row) in win.rows.iter().enumerate() {
                        let (a, b) = t.stream::<M>(row, dx);
                        col.0 = simd.mul_add_e_f32s(w[3 * dy + dx], a, col.0);
                        if t.two {
                            col.1 = simd.mul_add_e_f32s(w[3 * dy + dx], b, col.1);
                        }
                    }
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = simd.add_f32s(*a, t.tap::<M>(simd, col, v, dx));
                    }
                }
                win.advance(simd);
                for (v, a) in acc.into_iter().enumerate() {
                    let a = if RELU { simd.relu(a) } else { a };
                    t.store(simd, out_plane, y, v, a);
                }
            }
        }
    }

    /// The direct stride-1 path (see [`S1`]).
    #[inline(always)]
    fn run_s1<S: SimdExt>(self, simd: S) {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        let l = S::F32_LANES;
        let wd = g.in_w;
        let (in_hw, out_hw) = (g.in_h * wd, g.out_h * wd);
        let shift = g.pad_top * wd;
        let (ml, mr) = column_masks(wd, l);
        let s1 = S1 {
            simd,
            wd,
            in_hw,
            out_hw,
            shift,
            ml: &ml,
            mr: &mr,
        };
        let end = out_hw.div_ceil(l) * l;
        // Vectors reading the plane in place: q - shift - 1 >= 0 and
        // q + l - shift + 2 wd + 1 <= in_hw, with the whole vector stored.
        let qa = (shift + 1).div_ceil(l) * l;
        let top = (in_hw + shift).saturating_sub(2 * wd + 1 + l);
        let qb = if in_hw + shift >= 2 * wd + 1 + l {
            ((top / l + 1) * l).min(out_hw / l * l)
        } else {
            0
        };
        let (qa, qb) = if qb > qa { (qa, qb) } else { (end, end) };
        // Zero-padded copies for the head (0..qa) and the tail (qb..end): the
        // positions plus the rows their taps reach.
        let mut head = scratch::take(qa.min(end) + 2 * wd + 2, 0.0f32);
        let mut tail = scratch::take(end - qb.max(qa) + 2 * wd + 2, 0.0f32);
        for (c, plane, out_plane) in planes(g, input, output, channels.clone()) {
            let mut w = [simd.splat_f32s(0.0); 9];
            for (wv, &x) in w.iter_mut().zip(&p.weights[c * 9..c * 9 + 9]) {
                *wv = simd.splat_f32s(x);
            }
            let bias = simd.splat_f32s(p.bias[c]);
            macro_rules! go {
                ($relu:expr) => {{
                    s1.padded::<$relu>(plane, &mut head, 0, qa.min(end), &w, bias, out_plane);
                    if qa < qb {
                        // SAFETY: vectors qa..qb read positions q - shift - 1 >= 0 up
                        // to q + l - shift + 2 wd + 1 <= in_hw (see qa and qb) and
                        // store whole vectors (qb <= out_hw).
                        unsafe {
                            s1.range::<$relu>(
                                plane.as_ptr(),
                                qa,
                                qb,
                                &w,
                                bias,
                                out_plane.as_mut_ptr(),
                            )
                        };
                    }
                    s1.padded::<$relu>(plane, &mut tail, qb.max(qa), end, &w, bias, out_plane);
                }};
            }
            if p.relu {
                go!(true)
            } else {
                go!(false)
            }
        }
    }
}

/// Where a stride-2 window reads its rows: input column `c` of a row is at
/// `ptr + c` for `c` in `-pad_left .. span` (see [`RowSources::new`]). Rows read in
/// place where that range lies inside the plane; the others (the first and last
/// rows, rows outside the input) come from zero-padded copies.
pub(crate) struct RowSources {
    in_h: usize,
    in_w: usize,
    pl: usize,
    /// Columns read past column 0 (exclusive end of the range).
    span: usize,
    /// Floats per padded row; column `c` at `P + c`.
    len: usize,
    /// Three padded rows (one per window row), then one row of padding.
    buf: Scratch<f32>,
}

/// Floats before column 0 in a padded row.
const P: usize = 2;

/// Where [`RowSources::prepare`] put one input row.
#[derive(Clone, Copy)]
pub(crate) enum Src {
    /// Read in place: the row starts at this index of the plane.
    Plane(usize),
    /// A padded copy in slot `dy`, or (slot 3) the padding row.
    Slot(usize),
}

impl RowSources {
    /// Rows for `vecs` output vectors of `lanes` (stride 2, `pl <= 2` padding
    /// columns), padding value `pad`.
    pub fn new(g: &PlaneGeom, vecs: usize, lanes: usize, pad: f32) -> Self {
        // Vector x0 loads 2 * lanes floats at columns 2 x0 - pl and 2 x0 - pl + 1:
        // columns up to 2 * vecs * lanes - pl.
        let span = 2 * vecs * lanes + 1 - g.pad_left;
        let len = P + span;
        RowSources {
            in_h: g.in_h,
            in_w: g.in_w,
            pl: g.pad_left,
            span,
            len,
            buf: scratch::take(4 * len, pad),
        }
    }

    /// Makes input row `iy` of `plane` readable for window row `dy` (copying it if
    /// it cannot be read in place).
    #[inline(always)]
    pub fn prepare<S: SimdExt>(&mut self, simd: S, plane: &[f32], iy: isize, dy: usize) -> Src {
        let (w, len) = (self.in_w, self.len);
        if iy < 0 || iy as usize >= self.in_h {
            return Src::Slot(3);
        }
        let start = iy as usize * w;
        if start >= self.pl && start + self.span <= plane.len() {
            return Src::Plane(start);
        }
        // Only the columns the vectors read (the input may be wider).
        let cols = w.min(self.span);
        let row = &mut self.buf[dy * len..(dy + 1) * len];
        copy_row(simd, &plane[start..start + cols], &mut row[P..P + cols]);
        Src::Slot(dy)
    }

    /// Pointer to column 0 of a prepared row (take it after every `prepare` of
    /// the rows it is used with).
    #[inline(always)]
    pub fn ptr(&self, plane: &[f32], s: Src) -> *const f32 {
        match s {
            Src::Plane(start) => plane[start - self.pl..].as_ptr().wrapping_add(self.pl),
            Src::Slot(i) => self.buf[i * self.len + P..].as_ptr(),
        }
    }
}

/// Column masks of a stride-2 window: entry `x` of table `dx` is all-ones when
/// column `2 x - pl + dx` is inside `0..in_w`, for `x < vecs * lanes`, each vector
/// stored in split order (see [`SimdExt::unsplit_order`]) so a kernel uses it as
/// loaded. Only the vectors [`s2_edge`] flags are filled (the kernels read no
/// others): a row of masks would cost as much as the convolution of a one-row band.
pub(crate) fn s2_masks<S: SimdExt>(simd: S, g: &PlaneGeom, vecs: usize) -> Scratch<f32> {
    let lanes = S::F32_LANES;
    let n = vecs * lanes;
    let mut m = scratch::take(3 * n, 0.0f32);
    for x0 in (0..n).step_by(lanes) {
        if !s2_edge(g, x0, lanes) {
            continue;
        }
        for dx in 0..3 {
            let v = &mut m[dx * n + x0..dx * n + x0 + lanes];
            for (x, e) in (x0..).zip(v.iter_mut()) {
                let c = (2 * x + dx) as isize - g.pad_left as isize;
                if c >= 0 && (c as usize) < g.in_w {
                    *e = f32::from_bits(u32::MAX);
                }
            }
            // SAFETY: `v` holds one vector of floats.
            unsafe { store::<S>(v.as_mut_ptr(), simd.unsplit_order(load::<S>(v.as_ptr()))) };
        }
    }
    m
}

/// Whether output vector `x0 .. x0 + lanes` (clipped to `out_w`) has a tap in a
/// padding column.
#[inline(always)]
pub(crate) fn s2_edge(g: &PlaneGeom, x0: usize, lanes: usize) -> bool {
    let last = (x0 + lanes).min(g.out_w) - 1;
    (x0 == 0 && g.pad_left > 0) || 2 * last + 2 >= g.in_w + g.pad_left
}

/// One output vector of the direct stride-2 path, in ascending order: `rows` point
/// at column `2 x0 - pl` of the three input rows. Per row, two pairs of loads
/// split into even and odd columns give the three taps; the column sums are masked
/// (bitwise) when `MASKED`.
///
/// # Safety
/// `rows[dy] .. + 2 * LANES + 1` is readable.
#[inline(always)]
unsafe fn s2_vec<S: SimdExt, const MASKED: bool, const RELU: bool>(
    simd: S,
    rows: &[*const f32; 3],
    w: &[S::f32s; 9],
    bias: S::f32s,
    m: &[S::f32s; 3],
) -> S::f32s {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut s = [zero; 3];
    for (dy, &r) in rows.iter().enumerate() {
        // SAFETY: the caller's contract.
        let (e0, o0, o1) = unsafe {
            let (e0, o0) = simd.split_even_odd_fast(load::<S>(r), load::<S>(r.add(l)));
            let (_, o1) = simd.split_even_odd_fast(load::<S>(r.add(1)), load::<S>(r.add(1 + l)));
            (e0, o0, o1)
        };
        s[0] = simd.mul_add_e_f32s(w[dy * 3], e0, s[0]);
        s[1] = simd.mul_add_e_f32s(w[dy * 3 + 1], o0, s[1]);
        s[2] = simd.mul_add_e_f32s(w[dy * 3 + 2], o1, s[2]);
    }
    if MASKED {
        for (x, &mm) in s.iter_mut().zip(m) {
            *x = and_bits(simd, *x, mm);
        }
    }
    let mut a = simd.add_f32s(simd.add_f32s(simd.add_f32s(s[1], bias), s[0]), s[2]);
    if RELU {
        a = simd.relu(a);
    }
    simd.unsplit_order(a)
}

/// The weights (one vector per tap) and the bias of channel `c`, broadcast.
#[inline(always)]
pub(super) fn channel_taps<S: SimdExt>(
    simd: S,
    p: &Depthwise3x3,
    c: usize,
) -> ([S::f32s; 9], S::f32s) {
    let mut w = [simd.splat_f32s(0.0); 9];
    for (wv, &x) in w.iter_mut().zip(&p.weights[c * 9..c * 9 + 9]) {
        *wv = simd.splat_f32s(x);
    }
    (w, simd.splat_f32s(p.bias[c]))
}

/// Stride-2 depthwise conv of small planes: each plane is copied once into a
/// zero-padded buffer ([`PaddedPlane`]), so every output vector reads its rows with
/// no per-row preparation and no column masks.
fn s2_small<S: SimdExt>(
    simd: S,
    p: &Depthwise3x3,
    io: (&[f32], &mut [f32]),
    channels: Range<usize>,
    pp: PaddedPlane,
) {
    pp.run(
        simd,
        io,
        channels,
        |c| channel_taps(simd, p, c),
        |&(w, bias), _, _, rows| {
            // SAFETY: `PaddedPlane::run` gives rows readable for 2 l + 1 floats.
            unsafe {
                if p.relu {
                    s2_vec::<S, false, true>(simd, &rows, &w, bias, &[bias; 3])
                } else {
                    s2_vec::<S, false, false>(simd, &rows, &w, bias, &[bias; 3])
                }
            }
        },
    );
}

impl Op<'_, '_> {
    /// The direct stride-2 path: per output row, the three input rows are read in
    /// place (or from padded copies at the plane's edges, see [`RowSources`]); per
    /// output vector, 12 loads, 9 in-lane shuffles and 9 FMAs, column masks only on
    /// the vectors that touch a padding column.
    #[inline(always)]
    fn run_s2<S: SimdExt>(self, simd: S) {
        let Op {
            p,
            g,
            input,
            output,
            channels,
        } = self;
        let l = S::F32_LANES;
        let out_w = g.out_w;
        let vecs = out_w.div_ceil(l);
        if let Some(pp) = PaddedPlane::new(g, vecs, l) {
            return s2_small(simd, p, (input, output), channels, pp);
        }
        let mut src = RowSources::new(g, vecs, l, 0.0);
        let masks = s2_masks(simd, g, vecs);
        let n = vecs * l;
        for (c, plane, out_plane) in planes(g, input, output, channels.clone()) {
            let (w, bias) = channel_taps(simd, p, c);
            for y in 0..g.out_h {
                let mut srcs = [Src::Slot(3); 3];
                for (dy, sv) in srcs.iter_mut().enumerate() {
                    *sv = src.prepare(simd, plane, (2 * y + dy) as isize - g.pad_top as isize, dy);
                }
                let mut rows = [core::ptr::null::<f32>(); 3];
                for (r, &sv) in rows.iter_mut().zip(&srcs) {
                    *r = src.ptr(plane, sv);
                }
                for x0 in (0..n).step_by(l) {
                    let mut at = rows;
                    for a in at.iter_mut() {
                        *a = a.wrapping_add(2 * x0).wrapping_sub(g.pad_left);
                    }
                    // SAFETY: RowSources makes columns -pl .. span of every row
                    // readable, which covers 2 x0 - pl .. + 2 l + 1 for x0 < n; the
                    // mask tables hold n entries each.
                    let v = unsafe {
                        if s2_edge(g, x0, l) {
                            let mut m = [bias; 3];
                            for (dx, mm) in m.iter_mut().enumerate() {
                                *mm = load::<S>(masks.as_ptr().add(dx * n + x0));
                            }
                            if p.relu {
                                s2_vec::<S, true, true>(simd, &at, &w, bias, &m)
                            } else {
                                s2_vec::<S, true, false>(simd, &at, &w, bias, &m)
                            }
                        } else {
                            let m = [bias; 3];
                            if p.relu {
                                s2_vec::<S, false, true>(simd, &at, &w, bias, &m)
                            } else {
                                s2_vec::<S, false, false>(simd, &at, &w, bias, &m)
                            }
                        }
                    };
                    store_in_plane::<S>(out_plane, y * out_w + x0, out_w - x0, v);
                }
            }
        }
    }
}

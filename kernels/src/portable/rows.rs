//! Padded input for the 3-wide window kernels (depthwise conv, pools, the stem
//! conv).
//!
//! An input row is copied once into scratch whose left and right padding is
//! already in place, so every output vector, border columns included, reads its
//! taps with plain unaligned loads: no border special case in the inner loops. For
//! stride 2 the copy also splits the row into its even and odd columns (in padded
//! coordinates), so the taps of 2x-strided outputs are contiguous too:
//! `dx = 0 -> even[x]`, `dx = 1 -> odd[x]`, `dx = 2 -> even[x + 1]`.
//!
//! The scratch is filled with the padding value once per call; copies only ever
//! write input columns, so the padding columns stay valid for every later row and
//! plane. [`RowLayout`] describes single prepared rows (the stem conv); [`Flat`]
//! prepares a whole band of rows so that every tap of every output is at a fixed
//! offset (the depthwise conv and the pools). A band holds a whole plane when it
//! fits in about 24 KB (every ShuffleNet plane at 224x224); each input row is read
//! from memory once per plane (plus the rows shared at band boundaries).
//! [`PaddedPlane`] is the stride-2 kernels' copy of a small plane, padding on all
//! four sides, for planes whose output rows are one or two vectors long.

use super::simd::{copy_small, fill, load, store, store_first, SimdExt};
use crate::scratch::{self, Scratch};
use crate::PlaneGeom;
use std::ops::Range;

/// Geometry of one prepared row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowLayout {
    /// 1 or 2.
    pub stride: usize,
    /// Padding columns left of the input.
    pub pad_left: usize,
    /// Input row width.
    pub in_w: usize,
    /// Floats in one prepared row.
    pub len: usize,
    /// Offset of the odd half (stride 2), or 0.
    pub odd: usize,
}

impl RowLayout {
    /// Layout for outputs `0..out_w` with `lanes` floats per vector.
    pub fn new(stride: usize, pad_left: usize, in_w: usize, out_w: usize, lanes: usize) -> Self {
        let vecs = out_w.div_ceil(lanes);
        if stride == 1 {
            let len = (in_w + pad_left).max(vecs * lanes + 2);
            RowLayout {
                stride,
                pad_left,
                in_w,
                len,
                odd: 0,
            }
        } else {
            let half = (in_w + pad_left).div_ceil(2).max(vecs * lanes + 1);
            RowLayout {
                stride,
                pad_left,
                in_w,
                len: 2 * half,
                odd: half,
            }
        }
    }

    /// Offset, inside a prepared row, of tap `dx` of output column 0.
    #[inline(always)]
    pub fn tap(&self, dx: usize) -> usize {
        if self.stride == 1 {
            dx
        } else {
            [0, self.odd, 1][dx]
        }
    }

    /// Copies input row `src` (`in_w` floats) into the input columns of prepared row
    /// `dst` (`len` floats); the padding columns are left as they are.
    #[inline(always)]
    pub fn fill_interior<S: SimdExt>(&self, simd: S, src: &[f32], dst: &mut [f32]) {
        let (pl, w) = (self.pad_left, self.in_w);
        let dst = &mut dst[..self.len];
        if self.stride == 1 {
            copy_row(simd, &src[..w], &mut dst[pl..pl + w]);
        } else {
            let (even, odd) = dst.split_at_mut(self.odd);
            split_row(simd, &src[..w], pl, even, odd);
        }
    }
}

/// Copies `src` to `dst` (same length) with vector moves, the last one overlapping
/// the previous (same values); no `memcpy` call.
#[inline(always)]
pub(crate) fn copy_row<S: SimdExt>(_simd: S, src: &[f32], dst: &mut [f32]) {
    let (l, w) = (S::F32_LANES, src.len());
    let dst = &mut dst[..w];
    if w < l {
        // SAFETY: both slices hold w < l <= 16 floats.
        unsafe { copy_small(src.as_ptr(), dst.as_mut_ptr(), w) };
        return;
    }
    let mut i = 0;
    loop {
        let at = i.min(w - l);
        // SAFETY: at + l <= w, the length of both slices.
        unsafe { store::<S>(dst.as_mut_ptr().add(at), load::<S>(src.as_ptr().add(at))) };
        if at == w - l {
            break;
        }
        i += l;
    }
}

/// Splits input row `src` whose padded column `u = ix + pad_left` goes to
/// `even[u / 2]` (u even) or `odd[u / 2]` (u odd). Only input columns are written.
#[inline(always)]
pub(crate) fn split_row<S: SimdExt>(
    simd: S,
    src: &[f32],
    pl: usize,
    even: &mut [f32],
    odd: &mut [f32],
) {
    let (l, w) = (S::F32_LANES, src.len());
    // Input column 2i lands in (even, pl/2 + i) if pl is even, else in
    // (odd, (pl-1)/2 + i); input column 2i+1 in the other half.
    let pairs = w / 2;
    if l > 1 && pairs >= l {
        {
            let (ev_dst, ev_at, od_dst, od_at) = if pl.is_multiple_of(2) {
                (&mut *even, pl / 2, &mut *odd, pl / 2)
            } else {
                (&mut *odd, (pl - 1) / 2, &mut *even, pl.div_ceil(2))
            };
            let (ev_dst, od_dst) = (
                &mut ev_dst[ev_at..ev_at + pairs],
                &mut od_dst[od_at..od_at + pairs],
            );
            let mut i = 0;
            loop {
                // The last vector pair overlaps the previous one (same values).
                let at = i.min(pairs - l);
                // SAFETY: at + l <= pairs: `src` holds 2 * pairs floats, the two
                // destinations `pairs` each.
                unsafe {
                    let s = src.as_ptr().add(2 * at);
                    let (e, o) = simd.split_even_odd(load::<S>(s), load::<S>(s.add(l)));
                    store::<S>(ev_dst.as_mut_ptr().add(at), e);
                    store::<S>(od_dst.as_mut_ptr().add(at), o);
                }
                if at == pairs - l {
                    break;
                }
                i += l;
            }
        }
        if w % 2 == 1 {
            let u = w - 1 + pl;
            if u.is_multiple_of(2) {
                even[u / 2] = src[w - 1];
            } else {
                odd[u / 2] = src[w - 1];
            }
        }
        return;
    }
    for (ix, &v) in src.iter().enumerate() {
        let u = ix + pl;
        if u.is_multiple_of(2) {
            even[u / 2] = v;
        } else {
            odd[u / 2] = v;
        }
    }
}

/// Scratch size aimed at for one band (prepared input and output; fits L1 with the
/// kernel's other data).
const BAND_BYTES: usize = 24 * 1024;

/// The input of a 3x3 window (stride 1 or 2) over a band of output rows, prepared
/// so that every output position is at a fixed offset from its 9 taps.
///
/// Output row `y` of the band, column `x`, is "flat" position `q = y * wq + x`.
/// Stride 1: one padded plane with row stride `wq`; tap `(dy, dx)` is at
/// `q + dy * wq + dx`. Stride 2: four planes by (row, column) parity of the padded
/// input, each with row stride `wq`; tap `(dy, dx)` is in plane `(dy & 1, dx & 1)`
/// at `q + (dy / 2) * wq + dx / 2`. A kernel computes all flat positions
/// `0..rows * wq` in one vector loop (the columns `out_w..wq` are garbage) into
/// the band's output scratch, then copies the real columns out. Padding is written
/// once (the planes start filled with it and copies only write input columns);
/// rows outside the input are refilled with it when a band reaches them.
pub(crate) struct Flat {
    st: usize,
    pt: usize,
    pl: usize,
    in_h: usize,
    in_w: usize,
    out_w: usize,
    /// Row stride of the planes and of the output scratch.
    wq: usize,
    /// Output rows per band.
    band: usize,
    /// Floats per prepared plane.
    plane_len: usize,
    buf: Scratch<f32>,
    out: Scratch<f32>,
    pad: f32,
    /// Per padded row of the band: the input row holds a NaN or an infinity (when
    /// tracked).
    flags: Scratch<bool>,
    track: bool,
}

impl Flat {
    /// Scratch for a 3x3 window of stride `st` (1 or 2) over `g`, vectors of
    /// `lanes`, padding with `pad`, tracking non-finite input rows if `track`.
    pub fn new(st: usize, g: &crate::PlaneGeom, lanes: usize, pad: f32, track: bool) -> Self {
        let (pl, in_w, out_w) = (g.pad_left, g.in_w, g.out_w);
        let wq = if st == 1 {
            (in_w + pl).max(out_w + 2)
        } else {
            (in_w + pl).div_ceil(2).max(out_w + 1)
        };
        let per_row = if st == 1 { 2 * wq } else { 5 * wq } * 4;
        let band = g.out_h.min((BAND_BYTES / per_row).max(2));
        let rows_p = if st == 1 { band + 2 } else { band + 1 };
        // Slack: the last vector of the flat loop runs up to lanes - 1 past the
        // band, and a tap reaches up to 2 columns on.
        let plane_len = rows_p * wq + lanes + 2;
        let planes = if st == 1 { 1 } else { 4 };
        Flat {
            st,
            pt: g.pad_top,
            pl,
            in_h: g.in_h,
            in_w,
            out_w,
            wq,
            band,
            plane_len,
            buf: scratch::take(planes * plane_len, pad),
            out: scratch::take(band * wq + lanes, 0.0),
            pad,
            flags: scratch::take((band - 1) * st + 3, false),
            track,
        }
    }

    /// Output rows per band.
    pub fn band(&self) -> usize {
        self.band
    }

    /// Flat positions of `rows` output rows.
    pub fn flat_len(&self, rows: usize) -> usize {
        rows * self.wq
    }

    /// Offsets of the 9 taps (`dy * 3 + dx`) from the prepared base, at `q = 0`.
    pub fn taps(&self) -> [usize; 9] {
        let (wq, pl) = (self.wq, self.plane_len);
        core::array::from_fn(|t| {
            let (dy, dx) = (t / 3, t % 3);
            if self.st == 1 {
                dy * wq + dx
            } else {
                ((dy & 1) * 2 + (dx & 1)) * pl + (dy >> 1) * wq + (dx >> 1)
            }
        })
    }

    /// Prepares the input of output rows `y0 .. y0 + rows` from `plane`.
    #[inline(always)]
    pub fn load<S: SimdExt>(&mut self, simd: S, plane: &[f32], y0: usize, rows: usize) {
        let (st, wq, pl_len) = (self.st, self.wq, self.plane_len);
        let (in_w, pl) = (self.in_w, self.pl);
        let n = (rows - 1) * st + 3;
        let iy0 = (y0 * st) as isize - self.pt as isize;
        for r in 0..n {
            let iy = iy0 + r as isize;
            let inside = iy >= 0 && (iy as usize) < self.in_h;
            let src = if inside {
                let iy = iy as usize;
                &plane[iy * in_w..(iy + 1) * in_w]
            } else {
                &plane[..0]
            };
            if st == 1 {
                let row = &mut self.buf[r * wq..(r + 1) * wq];
                if inside {
                    copy_row(simd, src, &mut row[pl..pl + in_w]);
                } else {
                    fill(simd, row, self.pad);
                }
            } else {
                // Padded row r goes to the planes of parity r & 1, row r >> 1.
                let base = (r & 1) * 2 * pl_len + (r >> 1) * wq;
                let (lo, hi) = self.buf[base..].split_at_mut(pl_len);
                let (even, odd) = (&mut lo[..wq], &mut hi[..wq]);
                if inside {
                    split_row(simd, src, pl, even, odd);
                } else {
                    fill(simd, even, self.pad);
                    fill(simd, odd, self.pad);
                }
            }
            if self.track {
                self.flags[r] = inside && has_nonfinite(simd, src);
            }
        }
    }

    /// Whether any input row read by band output row `y` (band-relative) holds a
    /// NaN or an infinity (false unless tracked).
    pub fn nonfinite(&self, y: usize) -> bool {
        self.flags[y * self.st..y * self.st + 3].iter().any(|&f| f)
    }

    /// Base of the prepared planes.
    pub fn src(&self) -> *const f32 {
        self.buf.as_ptr()
    }

    /// The output scratch (`band * wq + lanes` floats).
    pub fn out(&mut self) -> &mut [f32] {
        &mut self.out
    }

    /// Copies band output rows `0..rows` (their `out_w` real columns) to rows
    /// `y0..` of `dst` (an output plane of rows of `out_w`), multiplying by
    /// `scale(y)[x]` if given (average pooling).
    #[inline(always)]
    pub fn store<S: SimdExt>(
        &self,
        simd: S,
        dst: &mut [f32],
        y0: usize,
        rows: usize,
        scale: Option<(&[f32], &[f32])>,
    ) {
        let (wq, w) = (self.wq, self.out_w);
        let l = S::F32_LANES;
        for y in 0..rows {
            let src = &self.out[y * wq..y * wq + w];
            let d = &mut dst[(y0 + y) * w..(y0 + y + 1) * w];
            match scale {
                None => copy_row(simd, src, d),
                Some((cols, rows_f)) => {
                    // cols holds w rounded up to a whole vector.
                    let f = simd.splat_f32s(rows_f[y0 + y]);
                    let cols = &cols[..w.div_ceil(l) * l];
                    let mut x = 0;
                    while x < w {
                        let n = (w - x).min(l);
                        // SAFETY: x + l <= cols.len(); `src` holds w - x >= n floats
                        // from x (partial vectors through a copy).
                        unsafe {
                            let v = if n == l {
                                load::<S>(src.as_ptr().add(x))
                            } else {
                                let mut tmp = [0.0f32; super::simd::MAX_LANES];
                                copy_small(src.as_ptr().add(x), tmp.as_mut_ptr(), n);
                                load::<S>(tmp.as_ptr())
                            };
                            let c = load::<S>(cols.as_ptr().add(x));
                            let v = simd.mul_f32s(simd.mul_f32s(v, c), f);
                            if n == l {
                                store::<S>(d.as_mut_ptr().add(x), v);
                            } else {
                                super::simd::store_first::<S>(d.as_mut_ptr().add(x), v, n);
                            }
                        }
                        x += l;
                    }
                }
            }
        }
    }
}

/// Whether `row` holds a NaN or an infinity: `x * 0` is NaN exactly for those.
/// Eight independent sums: one chain of dependent FMAs ran at one vector per FMA
/// latency and took about 40% of the max pool's time; four chains still held the
/// loop to one vector per cycle (eight: max pool 112x112 of the probe 84 -> 80
/// us).
#[inline(always)]
pub(crate) fn has_nonfinite<S: SimdExt>(simd: S, row: &[f32]) -> bool {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 8];
    let mut quads = row.chunks_exact(8 * l);
    for q in &mut quads {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: `q` holds 8 * l floats.
            *a = simd.mul_add_e_f32s(unsafe { load::<S>(q.as_ptr().add(j * l)) }, zero, *a);
        }
    }
    let rest = quads.remainder();
    let mut chunks = rest.chunks_exact(l);
    for c in &mut chunks {
        // SAFETY: `c` holds l floats.
        acc[0] = simd.mul_add_e_f32s(unsafe { load::<S>(c.as_ptr()) }, zero, acc[0]);
    }
    let mut tail = 0.0f32;
    for &v in chunks.remainder() {
        tail += v * 0.0;
    }
    // (No `array::map` with a closure: LLVM does not always inline it, and out of
    // line it runs without the level's target features.)
    let a = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let b = simd.add_f32s(simd.add_f32s(acc[4], acc[5]), simd.add_f32s(acc[6], acc[7]));
    let sum = simd.add_f32s(a, b);
    (simd.reduce_sum_f32s(sum) + tail).is_nan()
}

/// Largest padded plane (floats) the small-plane stride-2 paths copy a plane into.
const SMALL_PLANE: usize = 4096;

/// The zero-padded copy of one small plane for the stride-2 window kernels
/// (average pool, depthwise conv): input column `ix` of row `iy` at `(iy +
/// pad_top) * w + pad_left + ix`. Every output vector then reads its three rows
/// with no per-row preparation and no column masks.
pub(crate) struct PaddedPlane {
    /// The geometry the plane was made for.
    g: PlaneGeom,
    /// Output columns of whole vectors the rows are wide enough for.
    n: usize,
    /// Floats per padded row.
    w: usize,
    buf: Scratch<f32>,
}

impl PaddedPlane {
    /// The padded plane of geometry `g` for output rows of `vecs` vectors of
    /// `lanes`, if the rows are at most two vectors long and the plane holds at
    /// most [`SMALL_PLANE`] floats: wide enough for the stride-2 window reads of
    /// every vector (2 n + 1 columns from column `-pad_left`, `n = vecs lanes`),
    /// tall enough for every window row. (Measured on AVX2: a 56x56 -> 28x28
    /// depthwise conv, four vectors a row, runs 1.34x slower through the copy; 28x28
    /// -> 14x14 0.93x, 14x14 -> 7x7 0.74x.)
    pub fn new(g: &PlaneGeom, vecs: usize, lanes: usize) -> Option<PaddedPlane> {
        let n = vecs * lanes;
        let w = (2 * n + 1).max(g.pad_left + g.in_w);
        let h = (2 * g.out_h + 1).max(g.pad_top + g.in_h);
        (vecs <= 2 && h * w <= SMALL_PLANE).then(|| PaddedPlane {
            g: *g,
            n,
            w,
            buf: scratch::take(h * w, 0.0f32),
        })
    }

    /// Copies `plane` (`in_h` rows of `in_w`) into the interior (the padding
    /// stays zero).
    #[inline(always)]
    fn fill<S: SimdExt>(&mut self, simd: S, plane: &[f32]) {
        let g = &self.g;
        for (iy, row) in plane.chunks_exact(g.in_w.max(1)).take(g.in_h).enumerate() {
            let at = (iy + g.pad_top) * self.w + g.pad_left;
            copy_row(simd, row, &mut self.buf[at..at + row.len()]);
        }
    }

    /// Runs the output vectors of planes `channels` of `input` (laid out as the
    /// geometry the plane was made for says, `check` passed) into `output`: per
    /// channel `c`, `setup(c)` once, then per output row `y` and vector `x0` the
    /// stored vector is `vector(&setup, y, x0, rows)`, `rows` the three window
    /// rows at column `2 x0 - pad_left`, each readable for `2 lanes + 1` floats.
    #[inline(always)]
    pub fn run<S: SimdExt, T>(
        mut self,
        simd: S,
        (input, output): (&[f32], &mut [f32]),
        channels: Range<usize>,
        mut setup: impl FnMut(usize) -> T,
        mut vector: impl FnMut(&T, usize, usize, [*const f32; 3]) -> S::f32s,
    ) {
        let l = S::F32_LANES;
        let g = self.g;
        let out_w = g.out_w;
        for (c, plane, out_plane) in planes(&g, input, output, channels) {
            self.fill(simd, plane);
            let t = setup(c);
            for y in 0..g.out_h {
                // (x0 + l <= n holds when the plane was made for these lanes; the
                // bound keeps the reads inside the buffer even if it was not.)
                for x0 in (0..out_w).step_by(l).take_while(|&x0| x0 + l <= self.n) {
                    let p = self.buf.as_ptr().wrapping_add(2 * y * self.w + 2 * x0);
                    let rows = [p, p.wrapping_add(self.w), p.wrapping_add(2 * self.w)];
                    let v = vector(&t, y, x0, rows);
                    store_in_plane::<S>(out_plane, y * out_w + x0, out_w - x0, v);
                }
            }
        }
    }
}

/// Planes `channels` of `input` with their output planes, laid out as the
/// depthwise conv and the pools take them (input plane `c` at `c * in_stride`,
/// output plane `c` at `(c - channels.start) * out_stride`, `check` passed):
/// `(c, in_h * in_w input floats, out_h * out_w output floats)`.
pub(crate) fn planes<'a>(
    g: &PlaneGeom,
    input: &'a [f32],
    output: &'a mut [f32],
    channels: Range<usize>,
) -> impl Iterator<Item = (usize, &'a [f32], &'a mut [f32])> {
    let (in_hw, out_hw, in_stride) = (g.in_h * g.in_w, g.out_h * g.out_w, g.in_stride);
    // (With one output plane the stride may be smaller than the plane.)
    let step = g.out_stride.max(out_hw).max(1);
    output
        .chunks_mut(step)
        .zip(channels)
        .map(move |(o, c)| (c, &input[c * in_stride..][..in_hw], &mut o[..out_hw]))
}

/// Stores output vector `v` at index `o` of `plane`, whose row holds `keep` more
/// floats from `o`: the whole vector when it fits in the plane (lanes past the row
/// land in later rows, which are written after this one), else the first `keep`
/// lanes (at most the plane's end).
#[inline(always)]
pub(crate) fn store_in_plane<S: SimdExt>(plane: &mut [f32], o: usize, keep: usize, v: S::f32s) {
    let l = S::F32_LANES;
    if o + l <= plane.len() {
        // SAFETY: o + l <= the plane's length.
        unsafe { store::<S>(plane.as_mut_ptr().add(o), v) };
    } else if o < plane.len() {
        let keep = keep.min(plane.len() - o).min(l);
        // SAFETY: keep floats from o stay inside the plane.
        unsafe { store_first::<S>(plane.as_mut_ptr().add(o), v, keep) };
    }
}

//! Padded input rows for the 3-wide window kernels (depthwise conv, pools, the stem
//! conv).
//!
//! An input row is copied once into a scratch row that already holds the left and
//! right padding, so every output vector, border columns included, reads its three
//! taps with plain unaligned loads: no border special case in the inner loops. For
//! stride 2 the copy also splits the row into its even and odd columns (in padded
//! coordinates), so the taps of 2x-strided outputs are contiguous too:
//! `dx = 0 -> even[x]`, `dx = 1 -> odd[x]`, `dx = 2 -> even[x + 1]`.
//!
//! The scratch rows stay in L1; each input row is read from memory once per plane.

use super::simd::{load, store, SimdExt};

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
    /// Vectors per output row: `ceil(out_w / LANES)`.
    pub vecs: usize,
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
                vecs,
            }
        } else {
            let half = (in_w + pad_left).div_ceil(2).max(vecs * lanes + 1);
            RowLayout {
                stride,
                pad_left,
                in_w,
                len: 2 * half,
                odd: half,
                vecs,
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

    /// Fills a prepared row with `pad` only (a row above or below the input).
    pub fn fill_pad(&self, dst: &mut [f32], pad: f32) {
        dst[..self.len].fill(pad);
    }

    /// Prepares `src` (one input row, `in_w` floats) into `dst` (`len` floats).
    #[inline(always)]
    pub fn fill<S: SimdExt>(&self, simd: S, src: &[f32], dst: &mut [f32], pad: f32) {
        let (pl, w) = (self.pad_left, self.in_w);
        let src = &src[..w];
        let dst = &mut dst[..self.len];
        if self.stride == 1 {
            dst[..pl].fill(pad);
            dst[pl..pl + w].copy_from_slice(src);
            dst[pl + w..].fill(pad);
            return;
        }
        let half = self.odd;
        let (even, odd) = dst.split_at_mut(half);
        // Padded column u = ix + pl goes to even[u / 2] (u even) or odd[u / 2].
        let (e_lo, e_hi) = (pl.div_ceil(2), (w - 1 + pl) / 2 + 1);
        let (o_lo, o_hi) = (pl / 2, (w + pl) / 2);
        even[..e_lo].fill(pad);
        even[e_hi..].fill(pad);
        odd[..o_lo].fill(pad);
        odd[o_hi..].fill(pad);
        // Input column 2i lands in (even, pl/2 + i) if pl is even, else in
        // (odd, (pl-1)/2 + i); input column 2i+1 in the other half.
        let (ev_dst, ev_at, od_dst, od_at) = if pl % 2 == 0 {
            (&mut *even, pl / 2, &mut *odd, pl / 2)
        } else {
            (&mut *odd, (pl - 1) / 2, &mut *even, pl.div_ceil(2))
        };
        let l = S::F32_LANES;
        let pairs = w / 2;
        let mut i = 0;
        if l > 1 {
            // Every vector store writes l real input columns, so it stays inside
            // the covered ranges (checked by the slice bounds below).
            let (ev_dst, od_dst) = (
                &mut ev_dst[ev_at..ev_at + pairs],
                &mut od_dst[od_at..od_at + pairs],
            );
            while i + l <= pairs {
                let s = &src[2 * i..2 * i + 2 * l];
                let (d_ev, d_od) = (&mut ev_dst[i..i + l], &mut od_dst[i..i + l]);
                // SAFETY: `s` holds 2 * l floats, `d_ev` and `d_od` l each.
                unsafe {
                    let (e, o) =
                        simd.split_even_odd(load::<S>(s.as_ptr()), load::<S>(s.as_ptr().add(l)));
                    store::<S>(d_ev.as_mut_ptr(), e);
                    store::<S>(d_od.as_mut_ptr(), o);
                }
                i += l;
            }
        }
        for (ix, &v) in src.iter().enumerate().skip(2 * i) {
            let u = ix + pl;
            if u % 2 == 0 {
                even[u / 2] = v;
            } else {
                odd[u / 2] = v;
            }
        }
    }
}

/// A ring of prepared rows for one plane: input row `iy` lives in slot `iy % SLOTS`
/// and is prepared on first use. Kernels ask for rows in a sliding window of at most
/// 5 rows that only moves down, so every input row is prepared once per plane.
pub(crate) struct RowRing {
    lay: RowLayout,
    buf: Vec<f32>,
    tags: [usize; SLOTS],
    /// Per slot: the input row holds a NaN or an infinity (when tracked).
    flags: [bool; SLOTS + 1],
    track: bool,
    pad: f32,
}

const SLOTS: usize = 8;
const PAD_SLOT: usize = SLOTS;

impl RowRing {
    /// A ring for rows of `lay`, padding with `pad`.
    pub fn new(lay: RowLayout, pad: f32) -> Self {
        let mut buf = vec![0.0; (SLOTS + 1) * lay.len];
        lay.fill_pad(&mut buf[PAD_SLOT * lay.len..], pad);
        RowRing {
            lay,
            buf,
            tags: [usize::MAX; SLOTS],
            flags: [false; SLOTS + 1],
            track: false,
            pad,
        }
    }

    /// Whether `prepare` flags rows holding a NaN or an infinity.
    pub fn track_nonfinite(&mut self, on: bool) {
        self.track = on;
    }

    /// Whether the row in `slot` holds a NaN or an infinity (false unless tracked;
    /// always false for the padding slot).
    #[inline(always)]
    pub fn nonfinite(&self, slot: usize) -> bool {
        self.flags[slot]
    }

    /// Forgets the prepared rows (a new plane starts).
    pub fn reset(&mut self) {
        self.tags = [usize::MAX; SLOTS];
    }

    /// Prepares (if needed) input row `iy` (signed; outside `0..in_h` is padding)
    /// of `plane` (`in_h` rows of `in_w`) and returns its slot index.
    #[inline(always)]
    pub fn prepare<S: SimdExt>(&mut self, simd: S, plane: &[f32], in_h: usize, iy: isize) -> usize {
        if iy < 0 || iy as usize >= in_h {
            return PAD_SLOT;
        }
        let iy = iy as usize;
        let slot = iy % SLOTS;
        if self.tags[slot] != iy {
            let w = self.lay.in_w;
            let len = self.lay.len;
            let lay = self.lay;
            let src = &plane[iy * w..(iy + 1) * w];
            lay.fill(
                simd,
                src,
                &mut self.buf[slot * len..(slot + 1) * len],
                self.pad,
            );
            self.tags[slot] = iy;
            if self.track {
                self.flags[slot] = has_nonfinite(simd, src);
            }
        }
        slot
    }

    /// Pointer to the start of a slot's row (valid until the next `prepare` of the
    /// same slot).
    #[inline(always)]
    pub fn row(&self, slot: usize) -> *const f32 {
        self.buf[slot * self.lay.len..].as_ptr()
    }
}

/// Whether `row` holds a NaN or an infinity: `x * 0` is NaN exactly for those.
#[inline(always)]
fn has_nonfinite<S: SimdExt>(simd: S, row: &[f32]) -> bool {
    let l = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    let mut acc = zero;
    let mut chunks = row.chunks_exact(l);
    for c in &mut chunks {
        // SAFETY: `c` holds l floats.
        acc = simd.mul_add_e_f32s(unsafe { load::<S>(c.as_ptr()) }, zero, acc);
    }
    let tail = chunks.remainder().iter().fold(0.0f32, |a, &v| a + v * 0.0);
    (simd.reduce_sum_f32s(acc) + tail).is_nan()
}

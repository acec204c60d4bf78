//! Streamed stages: a chain of steps run band by band, its intermediate tensors
//! living only in small band buffers that stay in cache.
//!
//! A band buffer holds the rows `[lo, hi)` the next op's current output rows read.
//! Moving to the next band, rows still needed are moved to the front of the buffer
//! (at most `kernel - stride` rows per channel) and only the new rows are computed,
//! so no work is repeated.

use super::plan::{input_rows, StemBand, UnitBand};
use super::step::{conv_of, depthwise_of, par_channels, par_pointwise, pointwise_of, pool_of};
use super::{out_in, split, ExecPlan};
use crate::program::{Step, TensorSource};
use crate::Error;
use kernels::{dispatch, PixelSpan, PlaneGeom};
use std::ops::Range;

/// Rows of a band buffer: which input rows it holds now.
struct Window {
    held: Range<usize>,
}

impl Window {
    /// Makes the buffer hold rows `want`, moving the rows it keeps to the front of
    /// each of its `channels` planes (`stride` floats apart, `width` floats a row).
    /// Returns the rows still to compute.
    fn advance(
        &mut self,
        want: Range<usize>,
        band: &mut [f32],
        channels: usize,
        stride: usize,
        width: usize,
    ) -> Range<usize> {
        let keep = want.start.max(self.held.start)..self.held.end.min(want.end);
        let todo_from = if keep.is_empty() {
            want.start
        } else {
            keep.end
        };
        if !keep.is_empty() && keep.start > self.held.start {
            let from = (keep.start - self.held.start) * width;
            let len = keep.len() * width;
            for c in 0..channels {
                band.copy_within(c * stride + from..c * stride + from + len, c * stride);
            }
        }
        self.held = want;
        todo_from..self.held.end
    }
}

/// Runs a pointwise -> depthwise -> pointwise unit band by band.
pub fn run_unit<T: TensorSource + ?Sized>(
    p: &ExecPlan,
    u: &UnitBand,
    steps: &[Step],
    t: &T,
    arena: &mut [f32],
    ext: &[f32],
    threads: usize,
) -> Result<(), Error> {
    let [s1, s2, s3] = u.steps;
    let (p1, dw, p2) = (&steps[s1], &steps[s2], &steps[s3]);
    let (
        Step::Pointwise { input: x, .. },
        Step::Depthwise { stride, pads, .. },
        Step::Pointwise { output: out, .. },
    ) = (p1, dw, p2)
    else {
        return Err(Error::Argument("unit band over the wrong steps".into()));
    };
    let (pw1, dwp, pw2) = (
        pointwise_of(p1, t)?,
        depthwise_of(dw, t)?,
        pointwise_of(p2, t)?,
    );
    let stride = *stride as usize;
    let ((h1, w1), (h2, w2)) = (p.shapes[s2].input, p.shapes[s2].output);
    let channels = pw1.groups * pw1.m;
    let stride_in = u.in_rows * w1;
    let stride_out = u.rows * w2;
    let (plane_x, plane_out) = (p.plane(x.buffer), p.plane(out.buffer));
    let mut window = Window { held: 0..0 };
    let mut r0 = 0;
    while r0 < h2 {
        let rows = r0..(r0 + u.rows).min(h2);
        let need = input_rows(&rows, stride, pads.top, 3, h1);
        // First conv: the new input rows into the first band.
        {
            let (band, xs) = out_in(p, arena, ext, p.area(u.band_in), *x)?;
            let todo = window.advance(need.clone(), band, channels, stride_in, w1);
            if !todo.is_empty() {
                let spans = (
                    PixelSpan {
                        stride: plane_x,
                        start: todo.start * w1,
                    },
                    PixelSpan {
                        stride: stride_in,
                        start: (todo.start - need.start) * w1,
                    },
                );
                par_pointwise(&pw1, xs, band, spans, todo.len() * w1, threads)?;
            }
        }
        // Depthwise conv: band to band.
        {
            let [band2, band1] = split(arena, [p.area(u.band_out), p.area(u.band_in)])?;
            let g = PlaneGeom {
                in_h: need.len(),
                in_w: w1,
                in_stride: stride_in,
                out_h: rows.len(),
                out_w: w2,
                out_stride: stride_out,
                pad_top: need.start + pads.top - rows.start * stride,
                pad_left: pads.left,
            };
            par_channels(band2, channels, stride_out, threads, |r, o| {
                dispatch::dwconv3x3(&dwp, &g, band1, o, r)
            })?;
        }
        // Second conv: the band into its rows of the output (in place if so planned).
        {
            let [o, band2] = split(arena, [p.range(*out), p.area(u.band_out)])?;
            let spans = (
                PixelSpan {
                    stride: stride_out,
                    start: 0,
                },
                PixelSpan {
                    stride: plane_out,
                    start: rows.start * w2,
                },
            );
            par_pointwise(&pw2, band2, o, spans, rows.len() * w2, threads)?;
        }
        r0 = rows.end;
    }
    Ok(())
}

/// Runs a convolution -> max pool stem band by band.
pub fn run_stem<T: TensorSource + ?Sized>(
    p: &ExecPlan,
    s: &StemBand,
    steps: &[Step],
    t: &T,
    arena: &mut [f32],
    ext: &[f32],
    threads: usize,
) -> Result<(), Error> {
    let [sc, sp] = s.steps;
    let (
        Step::Conv {
            pads: cpads, input, ..
        },
        Step::Pool { spec, output, .. },
    ) = (&steps[sc], &steps[sp])
    else {
        return Err(Error::Argument("stem band over the wrong steps".into()));
    };
    let (conv, pool) = (conv_of(&steps[sc], t)?, pool_of(spec));
    let ((hin, win), (hc, wc)) = (p.shapes[sc].input, p.shapes[sc].output);
    let (hp, wp) = p.shapes[sp].output;
    let band_stride = s.in_rows * wc;
    let (plane_in, plane_out) = (p.plane(input.buffer), p.plane(output.buffer));
    let mut window = Window { held: 0..0 };
    let mut r0 = 0;
    while r0 < hp {
        let rows = r0..(r0 + s.rows).min(hp);
        let need = input_rows(&rows, spec.stride.0, spec.pads.top, spec.kh, hc);
        {
            let (band, inp) = out_in(p, arena, ext, p.area(s.band), *input)?;
            let todo = window.advance(need.clone(), band, conv.cout, band_stride, wc);
            if !todo.is_empty() {
                // Conv output rows `todo` read input rows from `first` on: start the
                // input slice there so the kernel sees them as its row 0.
                let first = (todo.start * conv.stride_h).saturating_sub(cpads.top);
                let g = PlaneGeom {
                    in_h: hin - first,
                    in_w: win,
                    in_stride: plane_in,
                    out_h: todo.len(),
                    out_w: wc,
                    out_stride: band_stride,
                    pad_top: first + cpads.top - todo.start * conv.stride_h,
                    pad_left: cpads.left,
                };
                let inp = &inp[first * win..];
                let dst = &mut band[(todo.start - need.start) * wc..];
                par_channels(dst, conv.cout, band_stride, threads, |r, o| {
                    dispatch::conv2d(&conv, &g, inp, o, r)
                })?;
            }
        }
        {
            let [o, band] = split(arena, [p.range(*output), p.area(s.band)])?;
            let g = PlaneGeom {
                in_h: need.len(),
                in_w: wc,
                in_stride: band_stride,
                out_h: rows.len(),
                out_w: wp,
                out_stride: plane_out,
                pad_top: need.start + spec.pads.top - rows.start * spec.stride.0,
                pad_left: spec.pads.left,
            };
            let dst = &mut o[rows.start * wp..];
            par_channels(dst, conv.cout, plane_out, threads, |r, o| {
                dispatch::pool(&pool, &g, band, o, r)
            })?;
        }
        r0 = rows.end;
    }
    Ok(())
}

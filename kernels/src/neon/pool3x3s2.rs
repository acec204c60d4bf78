//! Max and average pooling, 3x3 windows with stride 2, as column sweeps
//! ([`super::sweep_s2`]): per input row two `ld2` give the window's three columns,
//! reduced once (`fmax`/`fadd`) and folded into the one or two output rows the
//! input row feeds. Max pooling fills padding lanes with -inf (`tbx`) and skips
//! padding rows, so only positions inside the input count and NaN propagates
//! (`fmax` returns NaN when either operand is); average pooling multiplies each
//! window sum by `1 / (rows counted * columns counted)`, with the counts of
//! `count_include_pad` (positions inside `[-pad, in + pad_end)`) or of the inside
//! positions, zero when nothing is counted. Other window shapes and strides, and
//! average pools of outputs larger than 1024 in either direction, run the scalar
//! twin.

use super::common::RowPlan;
use super::sweep_s2::{self, Op, Ops, Planes};
use super::sweep_s2_band::BandOp;
use crate::{KernelError, PlaneGeom, Pool, PoolKind};
use core::arch::aarch64::*;
use std::ops::Range;

/// Largest output extent whose average-pool divisors fit the stack tables.
const MAX_AVG_OUT: usize = 1024;

/// Max pooling as a window [`Op`]: every output starts at `floor` (-inf, or zero
/// for the ReLU behind the pool: `max(0, window)` costs no instruction more).
#[derive(Clone, Copy)]
struct Max {
    floor: f32,
}

impl Op for Max {
    type Row = float32x4_t;
    #[inline(always)]
    fn reduce(self, t: &[float32x4_t; 3]) -> float32x4_t {
        // SAFETY: register-only NEON arithmetic.
        unsafe { vmaxq_f32(vmaxq_f32(t[0], t[1]), t[2]) }
    }
    #[inline(always)]
    fn init(self) -> float32x4_t {
        // SAFETY: register-only broadcast.
        unsafe { vdupq_n_f32(self.floor) }
    }
    #[inline(always)]
    fn add(self, acc: float32x4_t, row: &float32x4_t, _dy: usize) -> float32x4_t {
        // SAFETY: register-only NEON arithmetic.
        unsafe { vmaxq_f32(acc, *row) }
    }
    #[inline(always)]
    fn finish(self, v: float32x4_t, _y: usize, _k: usize) -> float32x4_t {
        v
    }
}

impl<const N: usize> Ops<N> for Max {
    type O = Max;
    #[inline(always)]
    unsafe fn op(self, _i: usize, _x0: &[usize; N]) -> Max {
        self
    }
}

/// How an average pool turns a window sum into its mean.
trait Divisor: Copy {
    /// The mean of the window sum `v` of output row `y`, column step `k`.
    fn scale(self, v: float32x4_t, y: usize, k: usize) -> float32x4_t;
}

/// Average pooling of one column sweep as a window [`Op`], its divisors `D`.
#[derive(Clone, Copy)]
struct Avg<D>(D);

impl<D: Divisor> Op for Avg<D> {
    type Row = float32x4_t;
    #[inline(always)]
    fn reduce(self, t: &[float32x4_t; 3]) -> float32x4_t {
        // SAFETY: register-only NEON arithmetic.
        unsafe { vaddq_f32(vaddq_f32(t[0], t[1]), t[2]) }
    }
    #[inline(always)]
    fn init(self) -> float32x4_t {
        // SAFETY: register-only broadcast.
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    fn add(self, acc: float32x4_t, row: &float32x4_t, _dy: usize) -> float32x4_t {
        // SAFETY: register-only NEON arithmetic.
        unsafe { vaddq_f32(acc, *row) }
    }
    #[inline(always)]
    fn start(self, row: &float32x4_t, _dy: usize) -> float32x4_t {
        // The window sum starts at its first row (`0 + row` only differs in the
        // sign of a zero).
        *row
    }
    #[inline(always)]
    fn finish(self, v: float32x4_t, y: usize, k: usize) -> float32x4_t {
        self.0.scale(v, y, k)
    }
}

/// Per-window divisors of one column sweep: `rcx[k]` holds the column factors of
/// step `k`, `rcy[y]` the row factor of output row `y`.
#[derive(Clone, Copy)]
struct PerWindow<const N: usize> {
    rcx: [float32x4_t; N],
    rcy: *const f32,
}

impl<const N: usize> Divisor for PerWindow<N> {
    #[inline(always)]
    fn scale(self, v: float32x4_t, y: usize, k: usize) -> float32x4_t {
        // SAFETY: `rcy` holds a factor for every output row (`Factors`), and the
        // sweep passes y < out_h.
        unsafe { vmulq_f32(vmulq_n_f32(v, *self.rcy.add(y)), self.rcx[k]) }
    }
}

/// Row and column divisor factors of an average pool call.
#[derive(Clone, Copy)]
struct Factors {
    rcx: *const f32,
    rcy: *const f32,
}

impl<const N: usize> Ops<N> for Factors {
    type O = Avg<PerWindow<N>>;
    #[inline(always)]
    unsafe fn op(self, _i: usize, x0: &[usize; N]) -> Avg<PerWindow<N>> {
        // SAFETY: every step covers columns x0 .. x0 + 4 <= out_w, and `rcx` holds
        // out_w factors.
        unsafe {
            Avg(PerWindow {
                rcx: x0.map(|x| vld1q_f32(self.rcx.add(x))),
                rcy: self.rcy,
            })
        }
    }
}

/// One divisor for every window (`count_include_pad` with the windows inside the
/// padded input: ShuffleNet's pools): one `fmul` by a constant per output vector.
#[derive(Clone, Copy)]
struct Uniform {
    f: float32x4_t,
}

impl Divisor for Uniform {
    #[inline(always)]
    fn scale(self, v: float32x4_t, _y: usize, _k: usize) -> float32x4_t {
        // SAFETY: register-only NEON arithmetic.
        unsafe { vmulq_f32(v, self.f) }
    }
}

impl<const N: usize> Ops<N> for Uniform {
    type O = Avg<Uniform>;
    #[inline(always)]
    unsafe fn op(self, _i: usize, _x0: &[usize; N]) -> Avg<Uniform> {
        Avg(self)
    }
}

/// `1 / count` of the positions of window `o` (3 wide, stride 2) that are counted:
/// positions `2o - pad + d` inside `[lo, hi)`; zero when none is.
fn factor(o: usize, pad: usize, lo: isize, hi: isize) -> f32 {
    let first = 2 * o as isize - pad as isize;
    let n = (first..first + 3).filter(|i| (lo..hi).contains(i)).count();
    if n == 0 {
        0.0
    } else {
        1.0 / n as f32
    }
}

/// Pools planes `channels` (contract of the scalar twin): the NEON kernel for 3x3
/// windows with stride 2, the scalar twin for any other window.
pub fn pool(
    p: &Pool,
    g: &PlaneGeom,
    input: &[f32],
    output: &mut [f32],
    channels: Range<usize>,
) -> Result<(), KernelError> {
    p.check(g, input, output, &channels)?;
    if g.out_h == 0 || g.out_w == 0 || channels.is_empty() {
        return Ok(());
    }
    let fast = p.kh == 3 && p.kw == 3 && p.stride_h == 2 && p.stride_w == 2;
    let avg_fits = g.out_h <= MAX_AVG_OUT && g.out_w <= MAX_AVG_OUT;
    let plan = RowPlan::new(g.out_w, g.in_w, g.pad_left, 2, (9, true), 4);
    let (Some(plan), true) = (plan.as_ref(), fast) else {
        return crate::scalar::pool::pool(p, g, input, output, channels);
    };
    // SAFETY: `check` proved input planes `channels` (`in_h * in_w` floats at
    // `c * in_stride`) and output planes `0 .. channels.len()` (`out_h * out_w`
    // floats at `i * out_stride`) are inside their buffers; the plan keeps every
    // load inside its row and every store inside its output row.
    let pl = unsafe {
        Planes {
            src: input.as_ptr().add(channels.start * g.in_stride),
            in_stride: g.in_stride,
            dst: output.as_mut_ptr(),
            out_stride: g.out_stride,
            n: channels.len(),
            in_w: g.in_w,
            in_h: g.in_h,
            out_w: g.out_w,
            out_h: g.out_h,
        }
    };
    let (pl, plan, l) = (&pl, &plan, g.pad_left);
    match p.kind {
        PoolKind::Max => {
            // SAFETY: as above; register-only broadcast of the fill value.
            unsafe {
                let fill = vdupq_n_f32(f32::NEG_INFINITY);
                let band = Some(BandOp::Max { relu: p.relu });
                let max = Max {
                    floor: if p.relu { 0.0 } else { f32::NEG_INFINITY },
                };
                match g.pad_top {
                    0 => sweep_s2::run::<_, true, 0>(pl, plan, l, fill, max, band),
                    1 => sweep_s2::run::<_, true, 1>(pl, plan, l, fill, max, band),
                    _ => sweep_s2::run::<_, true, 2>(pl, plan, l, fill, max, band),
                }
            }
        }
        PoolKind::Avg { count_include_pad } => {
            if !avg_fits {
                return crate::scalar::pool::pool(p, g, input, output, channels);
            }
            let (top, left) = (g.pad_top as isize, g.pad_left as isize);
            let (ylim, xlim) = if count_include_pad {
                (
                    (-top, (g.in_h + p.pad_bottom) as isize),
                    (-left, (g.in_w + p.pad_right) as isize),
                )
            } else {
                ((0, g.in_h as isize), (0, g.in_w as isize))
            };
            // Every window with one divisor `1 / u^2`: one `fmul` per output vector.
            let uniform = |u: f32| {
                // SAFETY: as above; register-only broadcasts.
                unsafe {
                    let (z, f) = (vdupq_n_f32(0.0), vdupq_n_f32(u * u));
                    let (band, f) = (Some(BandOp::Avg(u * u)), Uniform { f });
                    match g.pad_top {
                        0 => sweep_s2::run::<_, false, 0>(pl, plan, l, z, f, band),
                        1 => sweep_s2::run::<_, false, 1>(pl, plan, l, z, f, band),
                        _ => sweep_s2::run::<_, false, 2>(pl, plan, l, z, f, band),
                    }
                }
            };
            // Every window whole inside the counted range (the first starts in it,
            // the last ends in it): divisor 9, known without the factor tables
            // (zeroing their 8 KiB cost more than a small call's pooling).
            let whole = |pad: usize, out: usize, (lo, hi): (isize, isize)| {
                -(pad as isize) >= lo && 2 * (out as isize - 1) - pad as isize + 3 <= hi
            };
            if whole(g.pad_top, g.out_h, ylim) && whole(g.pad_left, g.out_w, xlim) {
                uniform(1.0 / 3.0);
                return Ok(());
            }
            let mut rcy = [0f32; MAX_AVG_OUT];
            let mut rcx = [0f32; MAX_AVG_OUT];
            for (y, f) in rcy.iter_mut().enumerate().take(g.out_h) {
                *f = factor(y, g.pad_top, ylim.0, ylim.1);
            }
            for (x, f) in rcx.iter_mut().enumerate().take(g.out_w) {
                *f = factor(x, g.pad_left, xlim.0, xlim.1);
            }
            let u = rcx[0];
            if rcx[..g.out_w]
                .iter()
                .chain(&rcy[..g.out_h])
                .all(|&f| f == u)
            {
                uniform(u);
                return Ok(());
            }
            let f = Factors {
                rcx: rcx.as_ptr(),
                rcy: rcy.as_ptr(),
            };
            // SAFETY: as above; the factor tables cover out_w columns and out_h
            // rows.
            unsafe {
                let z = vdupq_n_f32(0.0);
                match g.pad_top {
                    0 => sweep_s2::run::<_, false, 0>(pl, plan, l, z, f, None),
                    1 => sweep_s2::run::<_, false, 1>(pl, plan, l, z, f, None),
                    _ => sweep_s2::run::<_, false, 2>(pl, plan, l, z, f, None),
                }
            }
        }
    }
    Ok(())
}

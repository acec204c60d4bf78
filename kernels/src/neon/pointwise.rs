//! Pointwise (grouped 1x1) convolution as a register-blocked GEMM: each packed
//! weight panel (up to 8 rows) times 12 pixels per register tile
//! ([`super::pw_tile`]: 2, 4, 6 or 8 rows, so a panel of 2 real rows costs a
//! quarter of a full one).
//!
//! Where the pixels come from depends on the group's K rows (its slice of the
//! index table):
//! - **in place** when they are planes at a constant distance (an identity table,
//!   as for every first 1x1 conv of a unit): the tile's pixel load steps from one
//!   plane to the next by post-indexing, so nothing is copied, any K runs in one
//!   pass, and the loop order is panel-major (each panel's output rows are written
//!   left to right);
//! - **packed** otherwise (a shuffle table): per 12-pixel tile the K rows (at most
//!   [`KC`] at a time) are copied once into a stack buffer `[k][12]` that every
//!   panel of the group then streams (four tiles per K row at a time, in asm); K beyond [`KC`] is processed in chunks, the
//!   partial sums parked in the output.
//!
//! The last, partial pixel tile reads its K rows in place when 12 floats from
//! every row stay inside the input (the extra lanes are computed and dropped),
//! else packs them zero-filled; partial tiles and panels with an odd number of
//! rows are stored through a small stack tile and copied out.

use super::common::{load_part, store_part};
use super::pw_tile::{
    fill_bias_table, strip, strip_whole, Strip, ADD_OUT, BIAS_TAB, FLOOR, INIT_OUT, NR, PANEL_TAB,
    RELU,
};
use crate::{InputPlanes, KernelError, Pointwise, PointwiseCall, MR};
use core::arch::aarch64::*;
use core::arch::asm;
use core::mem::MaybeUninit;

/// K rows per packed chunk.
const KC: usize = 256;
/// Floats of the packed strip buffer (on the stack: 32 KiB): `[tile][k][12]`.
const PACK: usize = 8192;
/// Panels whose bias tables are built at once.
const PB: usize = 16;

/// One panel of the call: weights, bias table, output and real rows.
#[derive(Clone, Copy)]
struct PanelOut {
    /// Packed weights of the panel (K step 0).
    w: *const f32,
    /// The panel's bias table.
    bias: *const f32,
    /// Epilogue flags of the panel's first K chunk: the residual is added
    /// ([`ADD_OUT`]), or with a zero bias the sums start from it ([`INIT_OUT`]).
    first: u64,
    /// Output row 0 of the panel at pixel 0 of the call.
    out: *mut f32,
    /// Real rows.
    rows: usize,
}

/// Copies `V` whole vectors and then `R < 4` floats (lane by lane: no call to
/// `memcpy` for a handful of floats); with `ZERO`, zero-fills the rest of a
/// 12-float row.
///
/// # Safety
/// `src .. src + 4 V + R` readable, `dst .. dst + 4 V + R` (with `ZERO`: `dst ..
/// dst + 12`) writable, not overlapping.
#[inline(always)]
unsafe fn copy_vr<const V: usize, const R: usize, const ZERO: bool>(
    src: *const f32,
    dst: *mut f32,
) {
    // SAFETY: V whole vectors, then the R floats after them; with ZERO the
    // vectors after those up to 12 floats.
    unsafe {
        for j in 0..V {
            vst1q_f32(dst.add(4 * j), vld1q_f32(src.add(4 * j)));
        }
        if R > 0 {
            let v = load_part(src.add(4 * V), R);
            if ZERO {
                vst1q_f32(dst.add(4 * V), v);
            } else {
                store_part(dst.add(4 * V), v, R);
            }
        }
        if ZERO {
            for j in (V + usize::from(R > 0))..NR / 4 {
                vst1q_f32(dst.add(4 * j), vdupq_n_f32(0.0));
            }
        }
    }
}

/// True when the `rows <= 8` floats at `b` are all zero (either sign); a whole
/// panel in two loads and one reduction.
///
/// # Safety
/// `b .. b + rows` readable.
#[inline(always)]
unsafe fn all_zero(b: *const f32, rows: usize) -> bool {
    // SAFETY: reads b .. b + rows (two vectors when rows = MR = 8).
    unsafe {
        if rows == MR {
            let v = vorrq_u32(vld1q_u32(b.cast()), vld1q_u32(b.add(4).cast()));
            vmaxvq_u32(vshlq_n_u32::<1>(v)) == 0
        } else {
            (0..rows).all(|r| *b.add(r) == 0.0)
        }
    }
}

/// Writes a panel's `MR` row floors: `src[r]` for `r < rows`, zero after.
///
/// # Safety
/// `src .. src + rows` readable, `dst .. dst + MR` writable, `rows <= MR`.
#[inline(always)]
unsafe fn fill_floors(dst: *mut f32, src: *const f32, rows: usize) {
    // SAFETY: reads src .. src + rows, writes dst .. dst + MR (MR = 8: two
    // vectors).
    unsafe {
        if rows == MR {
            vst1q_f32(dst, vld1q_f32(src));
            vst1q_f32(dst.add(4), vld1q_f32(src.add(4)));
        } else {
            for r in 0..MR {
                dst.add(r).write(if r < rows { *src.add(r) } else { 0.0 });
            }
        }
    }
}

/// Runs `$body` with `$copy` bound to the [`copy_vr`] of `$n` floats (`1..=12`;
/// nothing for any other `$n`), so a loop of copies of the same length carries
/// no length logic per copy.
macro_rules! with_copy {
    ($n:expr, $zero:literal, |$copy:ident| $body:expr) => {
        with_copy!(@arms $n, $zero, $copy, $body, 1 0 1, 2 0 2, 3 0 3, 4 1 0, 5 1 1, 6 1 2,
            7 1 3, 8 2 0, 9 2 1, 10 2 2, 11 2 3, 12 3 0)
    };
    (@arms $n:expr, $zero:literal, $copy:ident, $body:expr,
        $($k:literal $v:literal $r:literal),*) => {
        match $n {
            $($k => {
                let $copy = copy_vr::<$v, $r, $zero>;
                $body
            })*
            _ => {}
        }
    };
}

/// Copies `rows` rows of `n <= 12` floats, `ss` and `ds` floats apart.
///
/// # Safety
/// For `r < rows`: `src + r ss .. + n` readable, `dst + r ds .. + n` writable,
/// not overlapping.
#[inline(always)]
unsafe fn copy_rows(src: *const f32, ss: usize, dst: *mut f32, ds: usize, rows: usize, n: usize) {
    with_copy!(n, false, |copy| {
        for r in 0..rows {
            // SAFETY: row r reads n floats at src + r ss and writes n at dst + r
            // ds (the caller's contract).
            unsafe { copy(src.add(r * ss), dst.add(r * ds)) };
        }
    });
}

/// Runs `nt` tiles of `n` pixels each (`n <= 12`; `nt = 1` unless `n = 12`) of a
/// panel over K steps `k0 .. k0 + kc`: as one strip straight into the output when
/// the tiles are whole vectors and the panel has an even number of rows, else
/// tile by tile through a stack tile (the extra lanes and rows are dropped).
/// `WHOLE`: the call site runs whole tiles, so its direct strips take
/// [`strip_whole`]'s fixed-epilogue programs (other sites do not inline them).
///
/// # Safety
/// As for [`strip`] with `s.px`, `s.ps`, `s.pt` describing `4 ceil(n / 4)`
/// readable floats per tile and K step; the output holds the panel's `p.rows`
/// rows of `nt * n` floats at `out + r * os`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn panel_strip<const WHOLE: bool>(
    p: &PanelOut,
    k0: usize,
    mut s: Strip,
    out: *mut f32,
    os: usize,
    nt: usize,
    n: usize,
) {
    let r = p.rows.next_multiple_of(2);
    let nv = n.div_ceil(4);
    s.w = p.w.wrapping_add(k0 * MR);
    s.bias = p.bias;
    // SAFETY: forwarded contract; the weights of K steps k0 .. k0 + kc are inside
    // the panel. The stack-tile path reads and writes only `rows` rows of `n`
    // floats per tile of the output, and gives the strip a 12-float tile with a
    // 48-byte row stride.
    unsafe {
        if n == 4 * nv && r == p.rows {
            s.nt = nt;
            s.out = out;
            s.os = 4 * os;
            if WHOLE && nv == 3 {
                strip_whole(r, s);
            } else {
                strip(r, nv, s);
            }
            return;
        }
        // Rows the tile computes past the real ones (an odd panel's zero row) are
        // read by the tile's INIT_OUT / ADD_OUT loads: give them zeros.
        let mut tmp = MaybeUninit::<[f32; 8 * NR]>::uninit();
        let tmp = tmp.as_mut_ptr().cast::<f32>();
        let zeros = [0f32; NR];
        copy_rows(zeros.as_ptr(), 0, tmp.add(p.rows * NR), NR, r - p.rows, NR);
        for i in 0..nt {
            let o = out.add(i * n);
            if s.flags & (INIT_OUT | ADD_OUT) != 0 {
                copy_rows(o, os, tmp, NR, p.rows, n);
            }
            let t = Strip {
                nt: 1,
                px: s.px.wrapping_byte_offset(i as isize * s.pt),
                out: tmp,
                os: 4 * NR,
                ..s
            };
            strip(r, nv, t);
            copy_rows(tmp, NR, o, os, p.rows, n);
        }
    }
}

/// Copies `n` pixels (`n <= NR`) starting at `input + off + px` for every K row
/// offset `off` into `dst` as `[k][12]`, zero-filling the rest of each row.
///
/// # Safety
/// For every `off` in `offs`, `input + off + px .. + n` must be readable; `dst` must
/// hold `offs.len() * 12` writable floats.
#[inline(always)]
unsafe fn pack(input: *const f32, offs: &[usize], px: usize, n: usize, dst: *mut f32) {
    // SAFETY: reads n floats per row (caller's contract), writes 12 floats per row
    // inside `dst`.
    unsafe {
        let src = input.add(px);
        let mut d = dst;
        if n == NR {
            for &o in offs {
                vst1q_f32_x3(d, vld1q_f32_x3(src.add(o)));
                d = d.add(NR);
            }
        } else {
            with_copy!(n, true, |copy| {
                for &o in offs {
                    copy(src.add(o), d);
                    d = d.add(NR);
                }
            });
        }
    }
}

/// Packs four whole tiles (48 pixels from `input + px`) of every K row offset in
/// `offs` into `dst` (tile `i` at `dst + i * tile`, each `[k][12]`): per K row one
/// offset load, three four-register `ld1` and four three-register `st1` (inline
/// asm; tile by tile, with LLVM's split loads, cost 7 instructions a tile and row).
///
/// # Safety
/// For every `off` in `offs` (at least one), `input + off + px .. + 48` must be
/// readable; `dst + i * tile .. + 12 offs.len()` writable for `i < 4`.
#[inline(always)]
unsafe fn pack4(input: *const f32, offs: &[usize], px: usize, dst: *mut f32, tile: usize) {
    // SAFETY: per offset the program reads the 48 floats at `input + off + px`
    // and writes 12 floats at `dst + i tile + 12 k` for i < 4 (the caller's
    // contract); it touches only the declared registers.
    unsafe {
        asm!(
            "2:",
            "ldr {o}, [{offs}], #8",
            "add {o}, {src}, {o}, lsl #2",
            "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{o}], #64",
            "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{o}], #64",
            "ld1 {{v24.4s, v25.4s, v26.4s, v27.4s}}, [{o}]",
            "st1 {{v16.4s, v17.4s, v18.4s}}, [{d0}], #48",
            "st1 {{v19.4s, v20.4s, v21.4s}}, [{d1}], #48",
            "st1 {{v22.4s, v23.4s, v24.4s}}, [{d2}], #48",
            "st1 {{v25.4s, v26.4s, v27.4s}}, [{d3}], #48",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            offs = inout(reg) offs.as_ptr() => _,
            n = inout(reg) offs.len() => _,
            src = in(reg) input.add(px),
            o = out(reg) _,
            d0 = inout(reg) dst => _,
            d1 = inout(reg) dst.add(tile) => _,
            d2 = inout(reg) dst.add(2 * tile) => _,
            d3 = inout(reg) dst.add(3 * tile) => _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _,
            options(nostack),
        );
    }
}

/// `(first, step)` when the K rows are `first + kk * step` (any integer step).
/// Runs once per group and call over all K rows, so it has no branch per row: the
/// differences are compared modulo 2^32 (a vectorised OR of mismatches) and the
/// last row exactly. Together they are exact: a difference that only matched
/// modulo 2^32 would be `step - 2^32` when `step > 0` (`step + 2^32` when `step <
/// 0`; neither when `step = 0`), so all such errors share a sign and the last row
/// would be off.
fn progression(rows: &[u32]) -> Option<(usize, i64)> {
    let (&first, &last) = (rows.first()?, rows.last()?);
    let step = rows.get(1).map_or(0, |&r| i64::from(r) - i64::from(first));
    let s = step as u32;
    let miss = rows
        .iter()
        .zip(rows.iter().skip(1))
        .fold(0, |m, (&a, &b)| m | (b.wrapping_sub(a) ^ s));
    let ends = i64::from(first) + step * (rows.len() as i64 - 1) == i64::from(last);
    (miss == 0 && ends).then_some((first as usize, step))
}

/// Computes the panels and pixels of `call`; see [`Pointwise`] for the math. Same
/// contract and results (up to float rounding) as the scalar twin.
pub fn pointwise(
    p: &Pointwise,
    input: &[f32],
    output: &mut [f32],
    call: &PointwiseCall,
) -> Result<(), KernelError> {
    p.check(input, output, call)?;
    // SAFETY: `check` proved every run of the call inside `output`.
    unsafe { pointwise_raw(p, InputPlanes::of(input), output.as_mut_ptr(), call) };
    Ok(())
}

/// [`pointwise`] after its checks, for an output at `output` (also the body of
/// `dispatch::pointwise_rows`).
///
/// # Safety
/// `p.check` accepts the call for some output; every output run of the call
/// (`count` floats at `ch * stride + start` from `output`, for the call's
/// channels) is writable and written by no one else during the call; `input`
/// holds every run the call reads, and no one writes it or the floats of its
/// planes below `input.row_end` during the call.
pub(crate) unsafe fn pointwise_raw(
    p: &Pointwise,
    input: InputPlanes,
    output: *mut f32,
    call: &PointwiseCall,
) {
    if call.count == 0 || call.panels.is_empty() {
        return;
    }
    let c0 = p.channels_of(&call.panels).start;
    let ppg = p.panels_per_group();
    let (k, count) = (p.k, call.count);
    let (is, os) = (call.input.stride, call.output.stride);
    let last_flags = match (p.epilogue.relu, p.floor) {
        (true, Some(_)) => FLOOR,
        (true, None) => RELU,
        _ => 0,
    };
    // Scratch on the stack, left uninitialised (zeroing 40 KiB would cost more
    // than a small call): every float is written before it is read.
    let mut bias_tab = MaybeUninit::<[f32; PB * PANEL_TAB]>::uninit();
    let mut offs = MaybeUninit::<[usize; KC]>::uninit();
    let mut packed = MaybeUninit::<[f32; PACK]>::uninit();
    let (bias_tab, offs_p, packed) = (
        bias_tab.as_mut_ptr().cast::<f32>(),
        offs.as_mut_ptr().cast::<usize>(),
        packed.as_mut_ptr().cast::<f32>(),
    );
    let (inp, out) = (input.ptr, output);
    let full = count - count % NR;
    let mut panel = call.panels.start;
    // The group whose K rows `prog` describes.
    let (mut prog_g, mut prog) = (usize::MAX, None);
    while panel < call.panels.end {
        let g = panel / ppg;
        let end = call.panels.end.min((g + 1) * ppg).min(panel + PB);
        // Left uninitialised (as the scratch above): entries 0 .. end - panel
        // are written below before the slice over them is made.
        let mut po = MaybeUninit::<[PanelOut; PB]>::uninit();
        let po_p = po.as_mut_ptr().cast::<PanelOut>();
        for (i, pn) in (panel..end).enumerate() {
            let rows = p.rows_in_panel(pn);
            let ch_g = p.channel_of(pn, 0);
            let ch = ch_g - c0;
            // SAFETY: panel i < PB of the block has its PANEL_TAB floats (bias
            // table, then MR floors) and its entry of `po`; `check` proved the
            // bias (and any floor) holds the panel's `rows` channels from `ch_g`
            // on and the weights hold every panel of the call (`(pn + 1) * k *
            // MR <= len`); the caller vouched that the output holds channel
            // `ch` at `ch * os + call.output.start` (plus `count` pixels).
            unsafe {
                let b = p.bias.as_ptr().add(ch_g);
                // A zero bias is looked for only with floors: the planner's offset
                // chain gives its residual convs both.
                let first = if !p.epilogue.accumulate {
                    0
                } else if p.floor.is_some() && all_zero(b, rows) {
                    INIT_OUT
                } else {
                    ADD_OUT
                };
                let bias = bias_tab.add(i * PANEL_TAB);
                // The bias table is read unless the sums start from the output.
                if first != INIT_OUT {
                    fill_bias_table(bias, b, rows);
                }
                // The floors are read only with FLOOR, so written only with floors.
                if let Some(f) = p.floor {
                    fill_floors(bias.add(BIAS_TAB), f.as_ptr().add(ch_g), rows);
                }
                po_p.add(i).write(PanelOut {
                    w: p.weights.as_ptr().add(pn * k * MR),
                    bias,
                    first,
                    out: out.add(ch * os + call.output.start),
                    rows,
                });
            }
        }
        // SAFETY: the loop above wrote entries 0 .. end - panel (<= PB) of `po`.
        let po = unsafe { std::slice::from_raw_parts(po_p, end - panel) };
        let rows = &p.in_rows[g * k..(g + 1) * k];
        if g != prog_g {
            (prog_g, prog) = (g, progression(rows));
        }
        // Pixels from `packed_from` on go through the packed path.
        let mut packed_from = 0;
        if let Some((first, step)) = prog {
            let base = first * is + call.input.start;
            let ps = (step * is as i64 * 4) as isize;
            // The tail tile reads its whole vectors of every K row in place if
            // they stay inside the input (the last row read is the largest) and
            // inside the readable floats of each plane.
            let last = (first as i64 + step * (k as i64 - 1)).max(first as i64) as usize;
            let tail = count - full;
            let read_end = call.input.start + full + 4 * tail.div_ceil(4);
            let tail_in_place =
                tail > 0 && last * is + read_end <= input.len && read_end <= input.row_end;
            for po in po {
                // With ADD_OUT (the output added after the strip's K loop)
                // K runs in the packed path's chunks of KC steps, each stored
                // and the next starting from it, so that the output is added
                // at the same point on both paths: every pixel rounds the same
                // whatever the call's pixel count. (Other sums are one chain
                // of FMAs either way.)
                let chunk = if po.first == ADD_OUT { KC } else { k };
                for k0 in (0..k).step_by(chunk) {
                    let kc = chunk.min(k - k0);
                    let first = if k0 == 0 { po.first } else { INIT_OUT };
                    let last = if k0 + kc == k { last_flags } else { 0 };
                    let s = Strip {
                        nt: 0,
                        kc,
                        px: inp.wrapping_add(base).wrapping_offset(k0 as isize * ps / 4),
                        ps,
                        pt: 4 * NR as isize,
                        w: po.w,
                        bias: po.bias,
                        out: po.out,
                        os: 0,
                        flags: first | last,
                    };
                    // SAFETY: every K row `first + kk * step` is a row of the
                    // index table, so `check` proved `row * is + start + count <=
                    // len`: the whole tiles read pixels below `full <= count`,
                    // the tail tile up to `last * is + start + full + 4 ceil(tail
                    // / 4) <= len`, and below the plane's readable end (tested
                    // above); the strip reads K rows k0 .. k0 + kc. The panel
                    // writes its rows at pixels below `count`.
                    unsafe {
                        if full > 0 {
                            panel_strip::<true>(po, k0, s, po.out, os, full / NR, NR);
                        }
                        if tail_in_place {
                            let s = Strip {
                                px: s.px.add(full),
                                ..s
                            };
                            panel_strip::<false>(po, k0, s, po.out.add(full), os, 1, tail);
                        }
                    }
                }
            }
            packed_from = if tail_in_place { count } else { full };
        }
        if packed_from < count {
            let mut k0 = 0;
            while k0 < k {
                let kc = KC.min(k - k0);
                for (kk, &row) in rows[k0..k0 + kc].iter().enumerate() {
                    // SAFETY: kk < kc <= KC entries of the offsets array.
                    unsafe { offs_p.add(kk).write(row as usize * is + call.input.start) };
                }
                // SAFETY: the first kc offsets were written just above.
                let offs = unsafe { std::slice::from_raw_parts(offs_p, kc) };
                let last = if k0 + kc == k { last_flags } else { 0 };
                // Whole tiles per strip that fit the pack buffer.
                let per_strip = (PACK / (kc * NR)).max(1);
                let mut px = packed_from;
                while px < count {
                    let (nt, n) = if px < full {
                        (per_strip.min((full - px) / NR), NR)
                    } else {
                        (1, count - px)
                    };
                    // SAFETY: `check` proved every K row offset plus `count` pixels
                    // is inside `input`, and `px + nt n <= count`; `packed` holds
                    // nt * kc <= PACK / 12 rows of 12 floats. The strips read the
                    // packed tiles written here and write their panel's rows at
                    // pixels px .. px + nt n.
                    unsafe {
                        let mut t = 0;
                        while n == NR && t + 4 <= nt {
                            pack4(inp, offs, px + t * n, packed.add(t * kc * NR), kc * NR);
                            t += 4;
                        }
                        for t in t..nt {
                            pack(inp, offs, px + t * n, n, packed.add(t * kc * NR));
                        }
                        for po in po {
                            let first = if k0 == 0 { po.first } else { INIT_OUT };
                            let s = Strip {
                                nt: 0,
                                kc,
                                px: packed,
                                ps: 4 * NR as isize,
                                pt: (4 * NR * kc) as isize,
                                w: po.w,
                                bias: po.bias,
                                out: po.out,
                                os: 0,
                                flags: first | last,
                            };
                            panel_strip::<true>(po, k0, s, po.out.add(px), os, nt, n);
                        }
                    }
                    px += nt * n;
                }
                k0 += kc;
            }
        }
        panel = end;
    }
}

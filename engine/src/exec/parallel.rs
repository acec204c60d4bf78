//! Splitting one kernel call over threads by output channels (or weight panels):
//! each thread gets a contiguous range of units and the matching contiguous part of
//! the output, so the split is safe (`split_at_mut`) and every output value is
//! computed by the same code as in a single-threaded run: results are bit-identical
//! for any thread count. Uses `rayon::join`, which allocates nothing.

use crate::Error;
use std::ops::Range;

/// Runs `f(units, out_part)` over `parts` contiguous pieces of `units` in parallel.
/// `offset(u)` is where unit `u`'s output starts, in floats, on the same origin for
/// every unit (only differences are used).
pub fn for_parts<F, O>(
    out: &mut [f32],
    units: Range<usize>,
    parts: usize,
    offset: &O,
    f: &F,
) -> Result<(), Error>
where
    F: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync,
    O: Fn(usize) -> usize + Sync,
{
    let n = units.len();
    let left_parts = parts / 2;
    let mid = units.start + n * left_parts / parts.max(1);
    if parts <= 1 || mid == units.start || mid == units.end {
        return f(units, out);
    }
    let cut = offset(mid)
        .checked_sub(offset(units.start))
        .filter(|&c| c <= out.len())
        .ok_or_else(|| Error::Argument("parallel split outside the output".into()))?;
    let (a, b) = out.split_at_mut(cut);
    let (ra, rb) = rayon::join(
        || for_parts(a, units.start..mid, left_parts, offset, f),
        || for_parts(b, mid..units.end, parts - left_parts, offset, f),
    );
    ra.and(rb)
}

/// [`for_parts`] over the first `n` floats of `out`, one per item, cut only at
/// multiples of `block` items: `f(items, out_part)`.
pub fn for_blocks<F>(
    out: &mut [f32],
    n: usize,
    block: usize,
    threads: usize,
    f: &F,
) -> Result<(), Error>
where
    F: Fn(Range<usize>, &mut [f32]) -> Result<(), Error> + Sync,
{
    let out = out
        .get_mut(..n)
        .ok_or_else(|| Error::Argument("output shorter than its items".into()))?;
    let block = block.max(1);
    for_parts(
        out,
        0..n.div_ceil(block),
        threads,
        &|b| b * block,
        &|r, o| f(r.start * block..(r.end * block).min(n), o),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_done_once_in_its_own_part() {
        for parts in 1..6 {
            let mut out = vec![0.0f32; 37 * 3];
            for_parts(&mut out, 0..37, parts, &|u| u * 3, &|r, o| {
                assert_eq!(o.len(), r.len() * 3);
                for (i, u) in r.enumerate() {
                    o[i * 3..i * 3 + 3].fill(u as f32 + 1.0);
                }
                Ok(())
            })
            .unwrap();
            let want: Vec<f32> = (0..37).flat_map(|u| [u as f32 + 1.0; 3]).collect();
            assert_eq!(out, want, "parts={parts}");
        }
    }
}

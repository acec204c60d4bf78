//! The arena scheduler: gives every buffer an offset in one allocation so that
//! buffers alive at the same step never overlap, using greedy-by-size placement
//! with a best-fit choice of gap. Also computes the lower bound (the largest total
//! of buffers alive at one step) and checks a layout.

/// Offsets are multiples of this many floats (64 bytes: a cache line, and full
/// alignment for any SIMD load).
pub const ALIGN_FLOATS: usize = 16;

/// Steps during which a buffer holds live data, inclusive on both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// First step that writes (or, for the input, step 0).
    pub first: usize,
    /// Last step that reads it.
    pub last: usize,
}

impl Lifetime {
    fn overlaps(&self, o: &Lifetime) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

/// Where every buffer lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Offset of each buffer, in floats.
    pub offsets: Vec<usize>,
    /// Size of each buffer in floats, rounded up to [`ALIGN_FLOATS`].
    pub sizes: Vec<usize>,
    /// Total floats the arena needs.
    pub peak: usize,
    /// No layout can use fewer floats than this: the largest total size of the
    /// buffers alive at one step.
    pub lower_bound: usize,
}

/// Rounds up to the alignment, `None` on overflow.
pub fn aligned(floats: usize) -> Option<usize> {
    floats.checked_next_multiple_of(ALIGN_FLOATS)
}

/// Places buffers of `sizes` floats with `lifetimes`. Buffers with a lifetime that
/// never starts (`None`) get size 0 at offset 0.
pub fn plan(sizes: &[usize], lifetimes: &[Option<Lifetime>]) -> Option<Layout> {
    let sizes: Vec<usize> = sizes
        .iter()
        .zip(lifetimes)
        .map(|(&s, l)| if l.is_some() { aligned(s) } else { Some(0) })
        .collect::<Option<_>>()?;
    let mut order: Vec<usize> = (0..sizes.len())
        .filter(|&b| lifetimes[b].is_some())
        .collect();
    order.sort_by_key(|&b| (std::cmp::Reverse(sizes[b]), lifetimes[b].map(|l| l.first)));
    let mut offsets = vec![0; sizes.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut peak = 0usize;
    for b in order {
        let life = lifetimes[b]?;
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| lifetimes[p].is_some_and(|l| l.overlaps(&life)))
            .map(|&p| (offsets[p], offsets[p] + sizes[p]))
            .collect();
        conflicts.sort_unstable();
        let mut best: Option<(usize, usize)> = None; // (gap, offset)
        let mut end = 0;
        for (start, stop) in conflicts {
            if start > end
                && start - end >= sizes[b]
                && best.is_none_or(|(gap, _)| start - end < gap)
            {
                best = Some((start - end, end));
            }
            end = end.max(stop);
        }
        let offset = best.map_or(end, |(_, o)| o);
        offsets[b] = offset;
        peak = peak.max(offset.checked_add(sizes[b])?);
        placed.push(b);
    }
    Some(Layout {
        lower_bound: lower_bound(&sizes, lifetimes),
        offsets,
        sizes,
        peak,
    })
}

/// The largest total of (aligned) buffer sizes alive at one step.
fn lower_bound(sizes: &[usize], lifetimes: &[Option<Lifetime>]) -> usize {
    let steps = lifetimes
        .iter()
        .flatten()
        .map(|l| l.last + 1)
        .max()
        .unwrap_or(0);
    (0..steps)
        .map(|t| {
            (0..sizes.len())
                .filter(|&b| lifetimes[b].is_some_and(|l| l.first <= t && t <= l.last))
                .map(|b| sizes[b])
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

/// Places every living buffer one after the other: first those of `order` in that
/// order, then the rest. For buffers that all live at once (the row pipeline's
/// windows and bands), where no layout beats their sum, this one lets the caller
/// choose which buffers are neighbours: each pipeline segment gets one contiguous
/// region. `None` on overflow or an index out of range.
pub fn sequential(
    sizes: &[usize],
    lifetimes: &[Option<Lifetime>],
    order: &[usize],
) -> Option<Layout> {
    let sizes: Vec<usize> = sizes
        .iter()
        .zip(lifetimes)
        .map(|(&s, l)| if l.is_some() { aligned(s) } else { Some(0) })
        .collect::<Option<_>>()?;
    let mut offsets = vec![0; sizes.len()];
    let mut placed = vec![false; sizes.len()];
    let mut peak = 0usize;
    let rest: Vec<usize> = (0..sizes.len()).collect();
    for &b in order.iter().chain(&rest) {
        if std::mem::replace(placed.get_mut(b)?, true) || lifetimes[b].is_none() {
            continue;
        }
        offsets[b] = peak;
        peak = peak.checked_add(sizes[b])?;
    }
    Some(Layout {
        lower_bound: lower_bound(&sizes, lifetimes),
        offsets,
        sizes,
        peak,
    })
}

/// Checks that no two buffers alive at the same step overlap and that every buffer
/// fits in the arena. Returns the first conflict found.
pub fn check(layout: &Layout, lifetimes: &[Option<Lifetime>]) -> Result<(), String> {
    let n = layout.sizes.len();
    for a in 0..n {
        let Some(la) = lifetimes[a] else { continue };
        let (sa, ea) = (layout.offsets[a], layout.offsets[a] + layout.sizes[a]);
        if ea > layout.peak {
            return Err(format!("buffer {a} ends past the arena"));
        }
        if sa % ALIGN_FLOATS != 0 {
            return Err(format!("buffer {a} is misaligned"));
        }
        for (b, lb) in lifetimes.iter().enumerate().skip(a + 1) {
            let Some(lb) = *lb else { continue };
            let (sb, eb) = (layout.offsets[b], layout.offsets[b] + layout.sizes[b]);
            if la.overlaps(&lb) && sa < eb && sb < ea && layout.sizes[a] > 0 && layout.sizes[b] > 0
            {
                return Err(format!(
                    "buffers {a} and {b} are alive together ({la:?}, {lb:?}) and overlap"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(first: usize, last: usize) -> Option<Lifetime> {
        Some(Lifetime { first, last })
    }

    #[test]
    fn sequential_places_the_given_order_first_and_skips_the_dead() {
        let lives = [life(0, 3), None, life(0, 3), life(1, 2)];
        let l = sequential(&[20, 5, 16, 1], &lives, &[3, 0]).unwrap();
        assert_eq!(l.offsets[3], 0);
        assert_eq!(l.offsets[0], 16);
        assert_eq!(l.offsets[2], 48);
        assert_eq!((l.sizes[1], l.peak, l.lower_bound), (0, 64, 64));
        check(&l, &lives).unwrap();
        assert!(sequential(&[1], &[life(0, 0)], &[7]).is_none());
    }

    #[test]
    fn disjoint_lifetimes_share_memory() {
        let l = plan(&[32, 32, 32], &[life(0, 1), life(1, 2), life(2, 3)]).unwrap();
        assert_eq!(l.peak, 64);
        assert_eq!(l.lower_bound, 64);
        assert_eq!(l.offsets[0], l.offsets[2]);
        check(&l, &[life(0, 1), life(1, 2), life(2, 3)]).unwrap();
    }

    #[test]
    fn best_fit_picks_the_smallest_gap() {
        // Greedy by size puts A at 0, C at 64, B (step 0 only) at 112, E at 144. At
        // step 5, B is dead: D must take B's 32-float gap, not the end.
        let lifetimes = [life(0, 9), life(0, 0), life(0, 9), life(5, 5), life(0, 9)];
        let l = plan(&[64, 32, 48, 16, 32], &lifetimes).unwrap();
        check(&l, &lifetimes).unwrap();
        assert_eq!(l.offsets, vec![0, 112, 64, 112, 144]);
        assert_eq!(l.peak, 176);
        assert_eq!(l.lower_bound, 176);
    }

    #[test]
    fn check_finds_overlaps() {
        let lifetimes = [life(0, 2), life(1, 3)];
        let bad = Layout {
            offsets: vec![0, 16],
            sizes: vec![32, 32],
            peak: 48,
            lower_bound: 64,
        };
        assert!(check(&bad, &lifetimes).is_err());
    }

    #[test]
    fn sizes_are_aligned() {
        let l = plan(&[1, 17], &[life(0, 1), life(0, 1)]).unwrap();
        assert_eq!(l.sizes, vec![16, 32]);
        assert!(l.offsets.iter().all(|o| o % ALIGN_FLOATS == 0));
    }
}

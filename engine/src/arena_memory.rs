//! The memory of a session's arena: zeroed floats, allocated once. On Linux an
//! arena of at least 2 MiB is an anonymous map that the kernel is asked to back
//! with transparent huge pages (`huge_pages`). A large run's arena spans
//! thousands of 4 KiB pages (0.5x g = 3 at 720x1280: 11.4 MB, about 2800), and
//! every kernel call streams through some of them. Measured on the x86-64 host
//! (AMD EPYC Zen 4, transparent huge pages in `madvise` mode, as on most
//! distributions), paired rounds against the arena from the allocator, g = 3,
//! 0.5x / 1x / 2x:
//! 480x640 0.96 / 0.98 / 0.99 of the time, 720x1280 0.97 / 0.97 / 0.98, 224x224
//! unchanged (0.99 / 1.01 / 1.00; only 1x's and 2x's arenas are mapped there).
//! An identical control binary came out at 0.99-1.02 in the same rounds.
//! (Android is not `target_os = "linux"` to `memmap2`: its arenas stay on the
//! heap.)

/// Zeroed floats for an arena.
pub(crate) enum ArenaMemory {
    /// From the allocator.
    Heap(Vec<f32>),
    /// An anonymous map (page-aligned, so the floats are cast in place).
    #[cfg(all(target_os = "linux", not(miri)))]
    Mapped(memmap2::MmapMut),
}

impl ArenaMemory {
    /// `len` zeroed floats, or `None` if the memory cannot be had.
    pub(crate) fn zeroed(len: usize) -> Option<ArenaMemory> {
        #[cfg(all(target_os = "linux", not(miri)))]
        if let Some(map) = mapped(len) {
            return Some(ArenaMemory::Mapped(map));
        }
        let mut v = Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize(len, 0.0);
        Some(ArenaMemory::Heap(v))
    }

    /// The floats.
    pub(crate) fn floats(&mut self) -> &mut [f32] {
        match self {
            ArenaMemory::Heap(v) => v,
            // (The cast was checked when the map was made; it cannot fail later.)
            #[cfg(all(target_os = "linux", not(miri)))]
            ArenaMemory::Mapped(map) => {
                bytemuck::try_cast_slice_mut(&mut map[..]).unwrap_or_default()
            }
        }
    }

    /// Number of floats.
    pub(crate) fn len(&self) -> usize {
        match self {
            ArenaMemory::Heap(v) => v.len(),
            #[cfg(all(target_os = "linux", not(miri)))]
            ArenaMemory::Mapped(map) => map.len() / 4,
        }
    }
}

/// An anonymous map of `len` floats advised for huge pages, if `len` is large
/// enough and the map can be made.
#[cfg(all(target_os = "linux", not(miri)))]
fn mapped(len: usize) -> Option<memmap2::MmapMut> {
    let mut map = crate::huge_pages::anonymous(len.checked_mul(4)?)?;
    bytemuck::try_cast_slice_mut::<u8, f32>(&mut map[..]).ok()?;
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::ArenaMemory;

    #[test]
    fn arenas_are_zeroed_writable_and_large_ones_mapped_on_linux() {
        for len in [0, 1, 1000, (2 << 20) / 4 - 1, (2 << 20) / 4, 3 << 20] {
            let Some(mut a) = ArenaMemory::zeroed(len) else {
                panic!("{len} floats: no memory");
            };
            assert_eq!(a.len(), len);
            let f = a.floats();
            assert_eq!(f.len(), len);
            assert!(f.iter().all(|&x| x == 0.0), "{len} floats: not zeroed");
            if let Some(last) = f.last_mut() {
                *last = 1.5;
            }
            assert_eq!(a.floats().last().copied(), (len > 0).then_some(1.5));
            let mapped = !matches!(a, ArenaMemory::Heap(_));
            let want = cfg!(all(target_os = "linux", not(miri))) && len * 4 >= 2 << 20;
            assert_eq!(mapped, want, "{len} floats");
        }
    }
}

//! Anonymous memory advised for transparent huge pages (Linux): the one place
//! that maps it, for the session arena ([`crate::arena_memory`]) and for large
//! model files and copies (`model_file::storage`).

/// Sizes from which memory is mapped and advised: one 2 MiB huge page.
const FROM_BYTES: usize = 2 << 20;

/// A zeroed anonymous map of `bytes` that the kernel is asked to back with
/// transparent huge pages (`madvise(MADV_HUGEPAGE)`, a hint: where they are off
/// it is ordinary memory), or `None` below [`FROM_BYTES`] or if no map can be
/// made (the caller then uses the heap or the file).
pub(crate) fn anonymous(bytes: usize) -> Option<memmap2::MmapMut> {
    if bytes < FROM_BYTES {
        return None;
    }
    let map = memmap2::MmapMut::map_anon(bytes).ok()?;
    // A hint; without transparent huge pages the map stays ordinary memory.
    let _ = map.advise(memmap2::Advice::HugePage);
    Some(map)
}

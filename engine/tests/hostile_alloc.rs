//! An allocation watcher for the hostile-input tests, included by them with
//! `#[path = "hostile_alloc.rs"] mod hostile_alloc;` (it installs the global
//! allocator of the test binary that includes it). Compiled alone, it tests itself.
//!
//! Two measures: the largest single allocation made by the current thread
//! ([`largest_allocation`]), and the peak of the bytes live in the whole process
//! ([`peak_live_bytes`], which sees every thread: use it in a test binary whose
//! other tests allocate little).

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Records the largest single allocation made by the current thread while on.
pub struct Largest;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Bytes live in the process, and their peak since the last reset.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grow(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(live, Ordering::SeqCst);
}

fn shrink(size: usize) {
    LIVE.fetch_sub(size, Ordering::SeqCst);
}

fn note(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: forwards to the system allocator; only adds thread-local bookkeeping.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // The old block is gone, the new one live (grow first: the peak counts
            // both, as a copying realloc holds both for a moment).
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOC: Largest = Largest;

/// Runs `f` on this thread and returns its result with the largest single
/// allocation it made (in bytes).
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    WATCHING.with(|w| w.set(true));
    let r = f();
    WATCHING.with(|w| w.set(false));
    (r, LARGEST.with(Cell::get))
}

/// Held by [`peak_live_bytes`] and by this file's own tests, so that they do not
/// count each other's allocations.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` and returns its result with the peak, while it ran, of the bytes live
/// in the whole process (every thread) above what was live when it started.
pub fn peak_live_bytes<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let r = f();
    (r, PEAK.load(Ordering::SeqCst).saturating_sub(base))
}

#[test]
fn the_watcher_sees_allocations() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (v, largest) = largest_allocation(|| vec![1u8; 3 << 20]);
    assert!(largest >= 3 << 20);
    let (_, none) = largest_allocation(|| v.len());
    assert_eq!(none, 0);
    let (w, grown) = largest_allocation(|| {
        let mut w = Vec::<u64>::with_capacity(1);
        w.resize(1000, 0);
        w
    });
    assert!(grown >= 8000 && w.len() == 1000);
}

//! An allocation watcher for the hostile-input tests, included by them with
//! `#[path = "hostile_alloc.rs"] mod hostile_alloc;` (it installs the global
//! allocator of the test binary that includes it). Compiled alone, it tests itself.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Records the largest single allocation made by the current thread while on.
pub struct Largest;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
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
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
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

#[test]
fn the_watcher_sees_allocations() {
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

//! After a session's first run, forward passes allocate nothing: a counting global allocator
//! proves it, on one thread and on several.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shortcut_core::Shape;
use shortcut_runtime::{zoo, Model, RunOptions};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_per_run(threads: usize) -> usize {
    let spec = zoo::torchvision("resnet18").unwrap();
    let options = RunOptions { threads: Some(threads), ..RunOptions::default() };
    let model = Model::random("resnet18", spec, 1, &options).unwrap();
    let shape = Shape::new(2, 3, 64, 48);
    let mut session = model.session(shape).unwrap();
    let x = vec![0.5f32; shape.len()];
    let mut y = vec![0.0f32; session.output_len()];
    session.run(&x, &mut y).unwrap();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..30 {
        session.run(&x, &mut y).unwrap();
    }
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// One test, so no other test thread allocates while counting.
#[test]
fn forward_allocates_nothing_after_the_first_run() {
    assert_eq!(allocations_per_run(1), 0, "single-threaded");
    assert_eq!(allocations_per_run(2), 0, "two threads");
    assert_eq!(allocations_per_run(3), 0, "three threads");
}

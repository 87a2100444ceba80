//! `sessiondb::decode` on untrusted bytes allocates in proportion to the input, not to the
//! lengths the input claims (issue 19): a 20-byte input whose length prefix claims 60 MiB must
//! not get a 60 MiB buffer. A counting allocator records the largest allocation made while a
//! decode runs.

#![allow(unsafe_code, reason = "a counting GlobalAlloc wraps the system allocator")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The largest single allocation `f` made (other threads of the test binary allocate little).
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let out = f();
    ARMED.store(false, Ordering::Relaxed);
    (out, LARGEST.load(Ordering::Relaxed))
}

/// One test, so that no other test of this binary allocates meanwhile.
#[test]
fn decode_allocates_in_proportion_to_the_input() {
    // A length prefix claiming 60 MiB, then 12 bytes: 20 bytes in all.
    let mut input = (60u64 << 20).to_le_bytes().to_vec();
    input.extend_from_slice(b"only a few b");
    assert_eq!(input.len(), 20);
    let (result, largest) = largest_allocation(|| sessiondb::decode::<String>(&input));
    assert!(matches!(result, Err(sessiondb::Error::Serde { .. })), "{result:?}");
    assert!(largest < 64 << 10, "decoding 20 bytes allocated {largest} bytes at once");
    // The same inside a structure: a tuple whose second field claims 60 MiB.
    let mut input = 7u64.to_le_bytes().to_vec();
    input.extend_from_slice(&(60u64 << 20).to_le_bytes());
    input.extend_from_slice(b"abcd");
    let (result, largest) = largest_allocation(|| sessiondb::decode::<(u64, String)>(&input));
    assert!(result.is_err(), "{result:?}");
    assert!(largest < 64 << 10, "decoding 20 bytes allocated {largest} bytes at once");

    // Valid encodings still decode, at every size around the limit's steps (the limit grows
    // with the input: 256 bytes, then four times larger each).
    for step in [256usize, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20] {
        for len in [step - 9, step - 8, step - 7, step + 1] {
            let value = (u8::MAX, "x".repeat(len.saturating_sub(9)));
            let bytes = sessiondb::encode(&value).unwrap();
            let (back, largest) =
                largest_allocation(|| sessiondb::decode::<(u8, String)>(&bytes).unwrap());
            assert_eq!(back, value, "{} encoded bytes", bytes.len());
            assert!(largest <= 4 * bytes.len().max(256), "{largest} for {} bytes", bytes.len());
        }
    }
}

//! The process's heap as glibc's allocator accounts for it: bytes handed out (in use, mmapped
//! chunks included) and bytes it holds free in its arenas, not yet returned to the system. RSS
//! alone cannot tell live data from a retained heap; `/metrics` exports both. On other C
//! libraries there is no such accounting and these report nothing.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

/// How to read the bytes the program's Rust code holds: the binary's global allocator counts
/// them (a library cannot declare one: tests bring their own), and says how with
/// [`count_allocations_with`].
static ALLOCATED: OnceLock<fn() -> usize> = OnceLock::new();

/// Registers the counter [`allocated`] reads; the first call wins.
pub fn count_allocations_with(counter: fn() -> usize) {
    let _ = ALLOCATED.set(counter);
}

/// The bytes the program's Rust code holds now (an atomic load), if the binary counts them.
pub fn allocated() -> Option<usize> {
    ALLOCATED.get().map(|count| count())
}

/// Heap bytes, from `mallinfo2` (summed over every arena).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUse {
    pub in_use: u64,
    pub free: u64,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn usage() -> Option<HeapUse> {
    // SAFETY: mallinfo2 has no preconditions; it walks the arenas under their locks.
    let m = unsafe { libc::mallinfo2() };
    Some(HeapUse {
        in_use: (m.uordblks + m.hblkhd) as u64,
        free: m.fordblks as u64,
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn usage() -> Option<HeapUse> {
    None
}

/// Sets the allocator up for a daemon whose load comes and goes, before the workers start.
///
/// glibc adjusts its thresholds as it goes: once a large block allocated by `mmap` (a table
/// of 100,000 transactions) is freed, blocks up to its size come from the arenas instead, and
/// an arena keeps up to twice that free at its top. Measured (`cargo xtask bench-memory`): 60 s
/// after a steady 1,000 calls/s, the two worker arenas held 20 MB of free top that neither
/// `free` nor `malloc_trim` (which trims only the main arena's top) gives back. Fixed
/// thresholds stop the adjustment: blocks of 256 KiB and up are mapped and unmapped on their
/// own, and an arena's free top beyond 1 MiB goes back when it is freed.
pub fn configure_for_daemon() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt has no preconditions; it takes the allocator's lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

/// Gives the free pages of every arena back to the system (`malloc_trim(0)`). Worth it after a
/// table shrank: glibc trims only the top of each heap by itself, and the worker threads' arenas
/// keep what a load spike left in their middle.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The most heap in use seen since the last trim.
static PEAK_SINCE_TRIM: AtomicU64 = AtomicU64::new(0);

/// Trims the heap ([`release_free_memory`]) once a load has passed: when at least half of the
/// most heap in use since the last trim, and 1 MB, was freed. Called once a second by every
/// worker (the heap is the process's: the first to see the drop trims). True if it trimmed.
///
/// Shrinking the tables is not the only sign: the messages that transactions kept (a BYE's
/// 200 for 32 s) are freed after the last table shrank, and without a trim their pages stay
/// with the process.
///
/// "In use" is the binary's own count ([`allocated`], an atomic load) when it keeps one, and
/// `mallinfo2` only otherwise: `mallinfo2` walks every free chunk of every arena under the
/// arena's lock, which took 3–19 ms at 2,000 calls/s and stalled the worker (and any thread
/// allocating from the arena) once a second: the load generator saw it as a p99.9 of ~20 ms.
pub fn release_after_load() -> bool {
    let in_use = match allocated() {
        Some(bytes) => bytes as u64,
        None => match usage() {
            Some(u) => u.in_use,
            None => return false,
        },
    };
    let peak = PEAK_SINCE_TRIM
        .fetch_max(in_use, Ordering::Relaxed)
        .max(in_use);
    if !worth_trimming(peak, in_use) {
        return false;
    }
    PEAK_SINCE_TRIM.store(in_use, Ordering::Relaxed);
    release_free_memory();
    true
}

fn worth_trimming(peak: u64, in_use: u64) -> bool {
    let freed = peak.saturating_sub(in_use);
    freed >= 1 << 20 && freed * 2 >= peak
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_half_the_peak_and_a_megabyte_were_freed() {
        const MB: u64 = 1 << 20;
        assert!(!worth_trimming(40 * MB, 30 * MB), "a quarter freed");
        assert!(worth_trimming(40 * MB, 20 * MB));
        assert!(worth_trimming(4 * MB, MB + MB / 2), "the tail of a load");
        assert!(!worth_trimming(MB, MB / 4), "less than a megabyte");
        assert!(!worth_trimming(MB, 2 * MB), "grown, not freed");
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn an_allocation_shows_in_use_and_its_release_as_free_or_returned() {
        // The counts are the whole process's, and the other tests allocate on their threads at
        // the same time: a measurement they disturbed is taken again (5 tries at most).
        let mut seen = Vec::new();
        for _ in 0..5 {
            let before = usage().unwrap();
            // black_box: in a release build the unused block would not be allocated at all.
            let block = std::hint::black_box(vec![7u8; 8 << 20]);
            let during = usage().unwrap();
            drop(block);
            release_free_memory();
            let after = usage().unwrap();
            if during.in_use >= before.in_use + (8 << 20) - 4096 && after.in_use < during.in_use {
                return;
            }
            seen.push((before, during, after));
        }
        panic!("the 8 MiB block never showed in use and then released: {seen:?}");
    }
}

//! The process's heap as glibc's allocator accounts for it: bytes handed out (in use, mmapped
//! chunks included) and bytes it holds free in its arenas, not yet returned to the system. RSS
//! alone cannot tell live data from a retained heap; `/metrics` exports both. On other C
//! libraries there is no such accounting and these report nothing.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn an_allocation_shows_in_use_and_its_release_as_free_or_returned() {
        let before = usage().unwrap();
        let block = vec![7u8; 8 << 20];
        let during = usage().unwrap();
        assert!(
            during.in_use >= before.in_use + (8 << 20) - 4096,
            "{before:?} {during:?}"
        );
        drop(block);
        release_free_memory();
        let after = usage().unwrap();
        assert!(after.in_use < during.in_use, "{during:?} {after:?}");
    }
}

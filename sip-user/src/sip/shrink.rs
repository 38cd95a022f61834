//! Tables give memory back once a load has passed: a hash map keeps its largest capacity
//! forever, so after a spike of 100,000 transactions an idle worker would still hold the
//! buckets for them. Called off the message path (once a second by the worker).

use std::{
    collections::{BinaryHeap, HashMap, VecDeque},
    hash::{BuildHasher, Hash},
};

/// A map keyed by what a sender chooses (dialog ids, source addresses): foldhash, keyed at
/// random per map, a few instructions per key where std's SipHash took ~60 per call of it.
/// A `griddle` map, which grows a few entries per insert (see the workspace manifest).
pub type FastMap<K, V> = griddle::HashMap<K, V, foldhash::fast::RandomState>;

/// Below this capacity a table is not worth shrinking.
const SMALL: usize = 1024;

/// A table that can give back memory: the incremental maps of the message path, std's maps of
/// the connection tables, and queues.
pub trait Shrink {
    fn capacity(&self) -> usize;
    /// Entries held.
    fn used(&self) -> usize;
    fn shrink_to(&mut self, min_capacity: usize);
}

/// Each table's own methods (inherent methods come before the trait's, so these do not
/// recurse). Queues are in the list because a burst (timers that fire together) grows one at
/// once, and its capacity would stay.
macro_rules! shrink_by_inherent_methods {
    ($([$($generics:tt)*] $table:ty),* $(,)?) => {$(
        impl<$($generics)*> Shrink for $table {
            fn capacity(&self) -> usize {
                self.capacity()
            }
            fn used(&self) -> usize {
                self.len()
            }
            fn shrink_to(&mut self, min_capacity: usize) {
                self.shrink_to(min_capacity);
            }
        }
    )*};
}

shrink_by_inherent_methods!(
    [K: Eq + Hash, V, S: BuildHasher] griddle::HashMap<K, V, S>,
    [K: Eq + Hash, V, S: BuildHasher] HashMap<K, V, S>,
    [T] VecDeque<T>,
    [T: Ord] BinaryHeap<T>,
);

/// Most entries a shrink moves. Shrinking rehashes every entry at once (griddle spreads only
/// growth): moving 229,376 entries took 20–41 ms on the test VM, so a table waits until the
/// load has mostly gone (~1–2 ms of moves) before it gives its memory back.
const MOST_MOVED: usize = 16_384;

/// Shrinks `table` to twice its length when it uses less than a quarter of its capacity (the
/// slack keeps a table that hovers around a size from reallocating back and forth) and holds
/// at most `MOST_MOVED` entries. True if it shrank.
pub fn shrink(table: &mut impl Shrink) -> bool {
    let capacity = table.capacity();
    let used = table.used();
    if capacity > SMALL && used * 4 < capacity && used <= MOST_MOVED {
        table.shrink_to(used * 2);
        table.capacity() < capacity
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_that_emptied_shrinks_and_a_busy_one_does_not() {
        let mut m: FastMap<u32, [u8; 64]> = (0..100_000).map(|i| (i, [0; 64])).collect();
        assert!(!shrink(&mut m), "full");
        m.retain(|&k, _| k < 30_000);
        assert!(!shrink(&mut m), "still more than a quarter of its capacity");
        m.retain(|&k, _| k < 20_000);
        assert!(!shrink(&mut m), "too many entries to move at once");
        m.retain(|&k, _| k < 10);
        let before = m.capacity();
        assert!(shrink(&mut m));
        assert!(m.capacity() < before / 100, "{} of {before}", m.capacity());
        assert_eq!(m.len(), 10);
        assert!(!shrink(&mut m), "small maps are left alone");
    }
}

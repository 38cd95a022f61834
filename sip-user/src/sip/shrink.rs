//! Tables give memory back once a load has passed: a hash map keeps its largest capacity
//! forever, so after a spike of 100,000 transactions an idle worker would still hold the
//! buckets for them. Called off the message path (once a second by the worker).

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasher, Hash},
};

/// A map keyed by what a sender chooses (dialog ids, source addresses): foldhash, keyed at
/// random per map, a few instructions per key where std's SipHash took ~60 per call of it.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Below this capacity a map is not worth shrinking.
const SMALL: usize = 1024;

/// Shrinks `map` to twice its length when it uses less than a quarter of its capacity (the
/// slack keeps a map that hovers around a size from reallocating back and forth). True if it
/// shrank.
pub fn shrink_map<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) -> bool {
    let capacity = map.capacity();
    if capacity > SMALL && map.len() * 4 < capacity {
        map.shrink_to(map.len() * 2);
        map.capacity() < capacity
    } else {
        false
    }
}

/// The same for a queue: a burst (timers that fire together) grows it at once, and its
/// capacity would stay.
pub fn shrink_deque<T>(queue: &mut VecDeque<T>) -> bool {
    let capacity = queue.capacity();
    if capacity > SMALL && queue.len() * 4 < capacity {
        queue.shrink_to(queue.len() * 2);
        queue.capacity() < capacity
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_that_emptied_shrinks_and_a_busy_one_does_not() {
        let mut m: HashMap<u32, [u8; 64]> = (0..100_000).map(|i| (i, [0; 64])).collect();
        assert!(!shrink_map(&mut m), "full");
        m.retain(|&k, _| k < 30_000);
        assert!(
            !shrink_map(&mut m),
            "still more than a quarter of its capacity"
        );
        m.retain(|&k, _| k < 10);
        let before = m.capacity();
        assert!(shrink_map(&mut m));
        assert!(m.capacity() < before / 100, "{} of {before}", m.capacity());
        assert_eq!(m.len(), 10);
        assert!(!shrink_map(&mut m), "small maps are left alone");
    }
}

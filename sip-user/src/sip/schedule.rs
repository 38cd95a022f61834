//! A timer schedule for the transaction and dialog tables: a binary heap of `(deadline, key)` in
//! which an entry may be stale, checked against the table when it reaches the top.
//!
//! A transaction's deadline moves several times in its life (every retransmission, a
//! provisional response, the final one), a dialog's at each phase. An ordered set moved it with
//! a removal and an insertion, ~600 instructions a move, about 4,000 a call for the
//! transactions (callgrind, `bench-e2e --daemon-instructions`). Here a move is a push (~50) and
//! the old entry stays until it is found stale: on top of the heap, where [`Schedule::settle`]
//! drops it so that the top is always a real deadline (no early wake-up), or when stale entries
//! outnumber the live ones, which [`Schedule::push`] then drops all at once, so the heap stays
//! within twice the live entries (plus a little). Written by hand: the lazy deletion needs the
//! caller's table to tell what is stale.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::shrink::shrink;

/// Stale entries allowed beyond the live ones before the heap is swept.
const SLACK: usize = 64;

/// Deadlines of type `T` with the key `K` of what they belong to.
#[derive(Debug)]
pub struct Schedule<T, K> {
    heap: BinaryHeap<Reverse<(T, K)>>,
}

impl<T: Ord, K: Ord> Default for Schedule<T, K> {
    fn default() -> Self {
        Schedule {
            heap: BinaryHeap::new(),
        }
    }
}

impl<T: Ord + Copy, K: Ord + Copy> Schedule<T, K> {
    /// `key`'s deadline moved from `old` to `new` (`None`: it had none, it has none or it
    /// ended). The new one is pushed; the old one's entry is left, and only if it was the first
    /// are the stale entries on top dropped (the first is otherwise still current: this keeps
    /// it so, without asking the table). `live` is how many entries can be current (the table's
    /// length, after the change); `current` tells whether an entry is still its key's deadline.
    pub fn moved(
        &mut self,
        key: K,
        old: Option<T>,
        new: Option<T>,
        live: usize,
        current: impl Fn(T, &K) -> bool,
    ) {
        let was_first = old.is_some_and(|old| self.first() == Some((old, key)));
        if let Some(at) = new {
            self.heap.push(Reverse((at, key)));
            if self.heap.len() > 2 * live + SLACK {
                self.heap.retain(|Reverse((at, key))| current(*at, key));
            }
        }
        if was_first {
            self.settle(current);
        }
    }

    /// The earliest entry: current, as long as every change went through [`Self::moved`] and
    /// [`Self::settle`] ran after the last [`Self::pop_first`].
    pub fn first(&self) -> Option<(T, K)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    pub fn pop_first(&mut self) {
        self.heap.pop();
    }

    /// Drops stale entries from the top, so that [`Self::first`] is a real deadline.
    pub fn settle(&mut self, current: impl Fn(T, &K) -> bool) {
        while let Some(Reverse((at, key))) = self.heap.peek() {
            if current(*at, key) {
                break;
            }
            self.heap.pop();
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Gives back the memory of a load that has passed; true if it shrank.
    pub fn shrink(&mut self) -> bool {
        shrink(&mut self.heap)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::{BTreeSet, HashMap},
        time::{Duration, Instant},
    };

    use bytes::Bytes;

    use super::*;
    use crate::sip::{
        peer::Peer,
        transaction::{
            TransactionLayer,
            key::Key,
            timers::{Deadline, Timers},
        },
    };

    /// `n` distinct transaction keys, as the layer makes them.
    fn keys(n: usize) -> Vec<Key> {
        let mut layer = TransactionLayer::new(Timers::default());
        let now = Instant::now();
        (0..n)
            .map(|i| {
                let request = format!(
                    "OPTIONS sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK{i}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n\
                     Call-ID: {i}@example.com\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                );
                let dest = Peer::udp("192.0.2.2:5060".parse().unwrap());
                layer.send_request(Bytes::from(request), dest, now).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_first_entry_is_the_earliest_current_deadline_and_the_heap_stays_bounded() {
        // A model (an ordered set of the current deadlines) next to the schedule, through
        // moves later and earlier, removals and re-additions, in a fixed pseudo-random order.
        let keys = keys(500);
        let t0 = Instant::now();
        let at = |ms: u64| Deadline::at(t0 + Duration::from_millis(ms));
        let mut current: HashMap<Key, Deadline> = HashMap::new();
        let mut model: BTreeSet<(Deadline, Key)> = BTreeSet::new();
        let mut s = Schedule::default();
        let mut x = 0x2545_f491_u64;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = keys[(x % keys.len() as u64) as usize];
            let old = current.remove(&key);
            if let Some(old) = old {
                model.remove(&(old, key));
            }
            let new = (!x.is_multiple_of(5)).then(|| at(1 + (x >> 20) % 60_000));
            if let Some(d) = new {
                current.insert(key, d);
                model.insert((d, key));
            }
            s.moved(key, old, new, current.len(), |a, k| {
                current.get(k) == Some(&a)
            });
            assert_eq!(s.first(), model.first().copied(), "step {step}");
            assert!(
                s.len() <= 2 * current.len() + SLACK + 1,
                "step {step}: {}",
                s.len()
            );
        }
        // Popping in order gives the model's order.
        while let Some((a, k)) = s.first() {
            assert_eq!(model.pop_first(), Some((a, k)));
            current.remove(&k);
            s.pop_first();
            s.settle(|a, k| current.get(k) == Some(&a));
        }
        assert!(model.is_empty());
    }
}

//! Choosing a backend for a new call: weighted rendezvous (highest random weight) hashing over
//! the Call-ID hash. Each backend scores `-weight / ln(u)`, with `u` in (0, 1) a hash of the
//! call and the backend's identity; the highest score wins. Removing one of N backends moves only
//! the calls that were on it (about 1/N), adding one moves about 1/(N+1) to it, and every
//! sip-fastpath node with the same backend list picks the same backend without sharing state.
//! (Schindelhauer and Schomaker, "Weighted distributed hash tables", SPAA 2005.)

use sip_common::fmix64;

/// A stable identity for a backend, from its configured name or address.
pub fn backend_id(name: &str) -> u64 {
    sip_common::hash_call_id(name.as_bytes())
}

/// The score of one backend for one call.
pub fn score(call_hash: u64, backend: u64, weight: f64) -> f64 {
    let h = fmix64(call_hash ^ fmix64(backend));
    // 53 bits into (0, 1), never 0 or 1, so ln(u) is finite and negative.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -weight / u.ln()
}

/// The index of the winning candidate, among `(id, weight)` pairs with a weight above zero.
pub fn pick(
    call_hash: u64,
    candidates: impl IntoIterator<Item = (usize, u64, f64)>,
) -> Option<usize> {
    candidates
        .into_iter()
        .filter(|&(_, _, w)| w > 0.0)
        .map(|(i, id, w)| (i, score(call_hash, id, w)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|i| sip_common::hash_call_id(format!("call-{i}@example.com").as_bytes()))
    }

    fn assign<'a>(backends: &[(&'a str, f64)], call: u64) -> Option<&'a str> {
        let c = backends
            .iter()
            .enumerate()
            .map(|(i, (n, w))| (i, backend_id(n), *w));
        pick(call, c).map(|i| backends[i].0)
    }

    #[test]
    fn split_follows_weights() {
        let backends = [("a:5060", 1.0), ("b:5060", 1.0), ("c:5060", 2.0)];
        let mut counts = [0u32; 3];
        for call in calls(40_000) {
            let i = pick(
                call,
                backends
                    .iter()
                    .enumerate()
                    .map(|(i, (n, w))| (i, backend_id(n), *w)),
            )
            .unwrap();
            counts[i] += 1;
        }
        for (count, expected) in counts.iter().zip([10_000.0, 10_000.0, 20_000.0]) {
            let off = (f64::from(*count) - expected).abs() / expected;
            assert!(off < 0.05, "{counts:?}");
        }
    }

    #[test]
    fn adding_or_removing_one_backend_moves_about_one_nth() {
        let three = [("a:5060", 1.0), ("b:5060", 1.0), ("c:5060", 1.0)];
        let four = [
            ("a:5060", 1.0),
            ("b:5060", 1.0),
            ("c:5060", 1.0),
            ("d:5060", 1.0),
        ];
        let (mut moved, mut moved_elsewhere, n) = (0, 0, 20_000);
        for call in calls(n) {
            let before = assign(&three, call);
            let after = assign(&four, call);
            if before != after {
                moved += 1;
                if after != Some("d:5060") {
                    moved_elsewhere += 1;
                }
            }
        }
        let share = f64::from(moved) / f64::from(n as u32);
        assert!(
            (0.22..0.28).contains(&share),
            "moved {share:.3} of calls, expected about 1/4"
        );
        assert_eq!(moved_elsewhere, 0, "calls only move to the new backend");
    }

    #[test]
    fn zero_weight_and_empty_pick_nothing() {
        assert_eq!(pick(42, [(0, 1, 0.0)]), None);
        assert_eq!(pick(42, []), None);
    }
}

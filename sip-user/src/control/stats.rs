//! `sip-fastpath stats`: the kernel counters (summed over CPUs) and the workers' counters, read
//! from the maps a running daemon pinned under `<pin root>/<iface>/`.

use std::{collections::BTreeMap, path::Path};

use aya::maps::{Array, MapData, PerCpuArray};
use serde::Serialize;
use sip_common::{CpuState, WorkerStats, map_names, method, reason, verdict};

use crate::proxy::{
    outcome::Outcome,
    target::{Refusal, RoutedBy},
};

/// Where a daemon pins its maps: `/sys/fs/bpf/sip-fastpath/<iface>/`.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/sip-fastpath";

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("no pinned maps at {path} ({source}): is `sip-fastpath run --iface {iface}` running?")]
    NotRunning {
        path: String,
        iface: String,
        source: Box<aya::maps::MapError>,
    },
    #[error("reading {map}: {source}")]
    Read {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Packets per verdict (`pass`, `redirect`, `drop`).
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Packets per `verdict/reason`.
    pub reasons: BTreeMap<String, u64>,
    /// SIP messages per method bucket.
    pub methods: BTreeMap<&'static str, u64>,
    pub workers: Vec<WorkerRow>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WorkerRow {
    pub cpu: u32,
    pub received: u64,
    pub misrouted: u64,
    pub no_call_id: u64,
    /// New requests by side: `outside`, `inside`.
    pub requests: BTreeMap<&'static str, u64>,
    /// Requests forwarded by how the destination was found (`pool`, `route`, `flow`, …).
    pub routed: BTreeMap<&'static str, u64>,
    /// Requests refused by the routing rules (`bad_flow_token`, `relay_denied`, …).
    pub refused: BTreeMap<&'static str, u64>,
    pub keepalives: u64,
    /// Datagrams this worker's proxy handled; what became of them, one outcome each; and the
    /// requests still waiting for DNS (`handled` = Σ `outcomes` + `parked`).
    pub handled: u64,
    pub outcomes: BTreeMap<&'static str, u64>,
    pub parked: u64,
    pub timer_replies: u64,
    pub handoff_dropped: u64,
}

impl WorkerRow {
    fn new(w: &WorkerStats) -> Self {
        WorkerRow {
            cpu: w.cpu,
            received: w.received,
            misrouted: w.misrouted,
            no_call_id: w.no_call_id,
            requests: [("outside", w.from_outside), ("inside", w.from_inside)].into(),
            routed: RoutedBy::ALL
                .iter()
                .zip(w.routed)
                .map(|(b, n)| (b.name(), n))
                .collect(),
            refused: Refusal::ALL
                .iter()
                .zip(w.refused)
                .map(|(r, n)| (r.name(), n))
                .collect(),
            keepalives: w.keepalives,
            handled: w.handled,
            outcomes: Outcome::ALL
                .iter()
                .zip(w.outcomes)
                .map(|(o, n)| (o.name(), n))
                .collect(),
            parked: w.parked,
            timer_replies: w.timer_replies,
            handoff_dropped: w.handoff_dropped,
        }
    }
}

/// Sums per-CPU states into [`Stats`] (no workers).
pub fn sum_cpu_states<'a>(states: impl IntoIterator<Item = &'a CpuState>) -> Stats {
    let mut s = Stats::default();
    for r in 0..reason::COUNT as u32 {
        s.reasons.insert(
            format!(
                "{}/{}",
                verdict::name(reason::verdict_of(r)),
                reason::name(r)
            ),
            0,
        );
    }
    for v in [verdict::PASS, verdict::REDIRECT, verdict::DROP] {
        s.verdicts.insert(verdict::name(v), 0);
    }
    for m in 0..method::COUNT as u32 {
        s.methods.insert(method::name(m), 0);
    }
    for st in states {
        for (r, n) in st.reasons.iter().enumerate() {
            let r = r as u32;
            *s.reasons
                .get_mut(&format!(
                    "{}/{}",
                    verdict::name(reason::verdict_of(r)),
                    reason::name(r)
                ))
                .expect("every reason was inserted above") += n;
            *s.verdicts
                .get_mut(verdict::name(reason::verdict_of(r)))
                .expect("inserted") += n;
        }
        for (m, n) in st.methods.iter().enumerate() {
            *s.methods.get_mut(method::name(m as u32)).expect("inserted") += n;
        }
    }
    s
}

/// Reads the stats of the daemon attached to `iface`.
pub fn read(pin_root: &Path, iface: &str) -> Result<Stats, StatsError> {
    let dir = pin_root.join(iface);
    let state_path = dir.join(map_names::CPU_STATE);
    let data = MapData::from_pin(&state_path).map_err(|source| StatsError::NotRunning {
        path: state_path.display().to_string(),
        iface: iface.to_string(),
        source: Box::new(source),
    })?;
    let map = aya::maps::Map::PerCpuArray(data);
    let states: PerCpuArray<_, CpuState> =
        PerCpuArray::try_from(map).map_err(|source| StatsError::Read {
            map: map_names::CPU_STATE,
            source,
        })?;
    let values = states.get(&0, 0).map_err(|source| StatsError::Read {
        map: map_names::CPU_STATE,
        source,
    })?;
    let mut stats = sum_cpu_states(values.iter());

    let workers_path = dir.join(map_names::WORKERS);
    if let Ok(data) = MapData::from_pin(&workers_path) {
        let workers: Array<_, WorkerStats> =
            Array::try_from(aya::maps::Map::Array(data)).map_err(|source| StatsError::Read {
                map: map_names::WORKERS,
                source,
            })?;
        for w in workers.iter().flatten() {
            if w.active != 0 {
                stats.workers.push(WorkerRow::new(&w));
            }
        }
    }
    Ok(stats)
}

impl Stats {
    /// Every datagram accounted for: the sockets' receipts are the proxies' (hand-overs move
    /// a datagram between workers; a full queue drops it), and each handled datagram has one
    /// outcome or waits for DNS. The proxies' counts are copied once a second, so under load
    /// the two sides may differ by the last second's traffic.
    pub fn reconciliation(&self) -> String {
        let sum = |f: fn(&WorkerRow) -> u64| -> u64 { self.workers.iter().map(f).sum() };
        let (received, dropped) = (sum(|w| w.received), sum(|w| w.handoff_dropped));
        let (handled, parked) = (sum(|w| w.handled), sum(|w| w.parked));
        let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
        for w in &self.workers {
            for (k, v) in &w.outcomes {
                *outcomes.entry(k).or_default() += v;
            }
        }
        let settled: u64 = outcomes.values().sum();
        let check = |ok: bool| {
            if ok {
                "ok"
            } else {
                "differs (counts copied once a second)"
            }
        };
        let mut out = format!(
            "datagrams received by the sockets {received:>12}\n             \x20 handed over and dropped (full)   {dropped:>12}\n             \x20 handled by the proxies          {handled:>12}   received = handled + dropped: {}\n             what became of the handled ones (one outcome each):\n",
            check(received == handled + dropped)
        );
        for (k, v) in outcomes.iter().filter(|&(_, &v)| v > 0) {
            out.push_str(&format!("  {k:<22} {v:>12}\n"));
        }
        out.push_str(&format!(
            "  waiting for DNS        {parked:>12}\n  total                  {:>12}   = handled: {}\n\
             final responses made by timers (408) {:>6}\n",
            settled + parked,
            check(settled + parked == handled),
            sum(|w| w.timer_replies)
        ));
        out
    }

    /// A human-readable table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("kernel (XDP), packets:\n");
        for (k, v) in &self.reasons {
            out.push_str(&format!("  {k:<22} {v:>12}\n"));
        }
        out.push_str("SIP methods seen in XDP:\n");
        for (k, v) in &self.methods {
            out.push_str(&format!("  {k:<22} {v:>12}\n"));
        }
        if !self.workers.is_empty() {
            out.push_str("workers:\n  cpu     received    misrouted   no_call_id\n");
            for w in &self.workers {
                out.push_str(&format!(
                    "  {:<3} {:>12} {:>12} {:>12}\n",
                    w.cpu, w.received, w.misrouted, w.no_call_id
                ));
            }
            // The routing counts, summed over workers (per worker in --json).
            let sum = |pick: fn(&WorkerRow) -> &BTreeMap<&'static str, u64>| {
                let mut total: BTreeMap<&'static str, u64> = BTreeMap::new();
                for w in &self.workers {
                    for (k, v) in pick(w) {
                        *total.entry(k).or_default() += v;
                    }
                }
                total
            };
            for (title, total) in [
                (
                    "requests by side (new, not retransmitted):",
                    sum(|w| &w.requests),
                ),
                (
                    "requests forwarded, by how the next hop was found:",
                    sum(|w| &w.routed),
                ),
                (
                    "requests refused by the routing rules:",
                    sum(|w| &w.refused),
                ),
            ] {
                out.push_str(title);
                out.push('\n');
                for (k, v) in total {
                    out.push_str(&format!("  {k:<22} {v:>12}\n"));
                }
            }
            let keepalives: u64 = self.workers.iter().map(|w| w.keepalives).sum();
            out.push_str(&format!("keep-alives answered     {keepalives:>12}\n"));
            out.push_str(&self.reconciliation());
        }
        out
    }
}

//! `sip-fastpath stats`: the kernel counters (summed over CPUs) and the workers' counters, read
//! from the maps a running daemon pinned under `<pin root>/<iface>/`.

use std::{collections::BTreeMap, path::Path};

use aya::maps::{Array, MapData, PerCpuArray};
use serde::Serialize;
use sip_common::{CpuState, WorkerStats, map_names, method, reason, verdict};

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
                stats.workers.push(WorkerRow {
                    cpu: w.cpu,
                    received: w.received,
                    misrouted: w.misrouted,
                    no_call_id: w.no_call_id,
                });
            }
        }
    }
    Ok(stats)
}

impl Stats {
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
        }
        out
    }
}

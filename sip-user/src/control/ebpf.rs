//! Loading the XDP program and writing its maps.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, CpuMap, LpmTrie, MapData, PerCpuArray, lpm_trie::Key},
    programs::{ProgramFd, Xdp, XdpMode, xdp::XdpLinkId},
};
use sip_common::{
    CpuState, EMPTY_PROGRAM_NAME, FilterConfig, ListHints, PROGRAM_NAME, hint_list, map_names,
};

use crate::control::{
    cidr,
    filter::{FilterError, FilterSettings},
};

fn hints_error(source: aya::maps::MapError) -> LoadError {
    LoadError::Map {
        map: map_names::LIST_HINTS,
        source,
    }
}

/// The XDP object built by `build.rs` (empty when the eBPF toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sip-ebpf.o"));

/// Queue length of each CPUMAP entry (frames waiting for the target CPU's kthread).
const CPUMAP_QUEUE: u32 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this sip-fastpath binary was built without its XDP program (the eBPF toolchain was \
         missing at build time): run `cargo xtask setup`, then `cargo xtask build`"
    )]
    NoObject,
    #[error("parsing the XDP object: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("loading XDP program `{name}` (the kernel's verifier said no?): {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("the XDP object has no map `{0}`")]
    MissingMap(&'static str),
    #[error("map `{map}`: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("setting CPUMAP entry for CPU {cpu}: {source}")]
    CpuMap {
        cpu: u32,
        source: aya::maps::xdp::XdpMapError,
    },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("attaching XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("pinning map `{map}` at {path}: {source}")]
    Pin {
        map: &'static str,
        path: String,
        source: aya::pin::PinError,
    },
}

/// The loaded (verified) XDP program and its maps.
pub struct FastPath {
    ebpf: Ebpf,
}

impl FastPath {
    /// Parses the embedded object and loads the program into the kernel (runs the verifier).
    pub fn load() -> Result<Self, LoadError> {
        if OBJECT.is_empty() {
            return Err(LoadError::NoObject);
        }
        let mut ebpf = EbpfLoader::new().load(OBJECT)?;
        load_program(&mut ebpf, PROGRAM_NAME)?;
        Ok(Self { ebpf })
    }

    /// Loads the empty baseline program from the same object (for `bench-xdp`).
    pub fn load_empty(&mut self) -> Result<&ProgramFd, LoadError> {
        if self.fd_of(EMPTY_PROGRAM_NAME).is_err() {
            load_program(&mut self.ebpf, EMPTY_PROGRAM_NAME)?;
        }
        self.fd_of(EMPTY_PROGRAM_NAME)
    }

    fn xdp(&mut self, name: &'static str) -> Result<&mut Xdp, LoadError> {
        let prog = self.ebpf.program_mut(name).ok_or(LoadError::Program {
            name,
            source: aya::programs::ProgramError::NotLoaded,
        })?;
        prog.try_into()
            .map_err(|source| LoadError::Program { name, source })
    }

    fn fd_of(&self, name: &'static str) -> Result<&ProgramFd, LoadError> {
        let prog = self.ebpf.program(name).ok_or(LoadError::Program {
            name,
            source: aya::programs::ProgramError::NotLoaded,
        })?;
        prog.fd()
            .map_err(|source| LoadError::Program { name, source })
    }

    pub fn program_fd(&self) -> Result<&ProgramFd, LoadError> {
        self.fd_of(PROGRAM_NAME)
    }

    /// Instructions the verifier processed, per loaded XDP program (the budget is 1M each).
    pub fn verified_instructions(&self) -> Vec<(&'static str, u32)> {
        [PROGRAM_NAME]
            .into_iter()
            .filter_map(|name| {
                let n = self
                    .ebpf
                    .program(name)?
                    .info()
                    .ok()?
                    .verified_instruction_count()?;
                Some((name, n))
            })
            .collect()
    }

    /// Writes `settings` into the maps: the config entry, both tries, and a CPUMAP entry for each
    /// steering CPU. Call it before attaching (or with no traffic), as the maps start empty.
    pub fn apply(&mut self, settings: &FilterSettings) -> Result<(), LoadError> {
        let config = settings.to_map_config()?;
        for cpu in &settings.steer_cpus {
            let map = self.map_mut(map_names::CPUS)?;
            let mut cpus = CpuMap::try_from(map).map_err(|source| LoadError::Map {
                map: map_names::CPUS,
                source,
            })?;
            cpus.set(*cpu, CPUMAP_QUEUE, None, 0)
                .map_err(|source| LoadError::CpuMap { cpu: *cpu, source })?;
        }
        for (name, hint_index, list) in [
            (
                map_names::BLOCKLIST,
                hint_list::BLOCKLIST,
                &settings.blocklist,
            ),
            (
                map_names::ALLOWLIST,
                hint_list::ALLOWLIST,
                &settings.allowlist,
            ),
        ] {
            // The hints may have more bits set than the trie needs, never fewer (a clear bit
            // skips the trie): the new CIDRs' bits are added before they enter the trie, and
            // the bits only old ones needed are cleared after these left it.
            let new_hints = cidr::hints(list);
            let old_hints = self.hints(hint_index)?;
            let mut both = new_hints;
            for (w, old) in both.words.iter_mut().zip(old_hints.words) {
                *w |= old;
            }
            self.set_hints(hint_index, both)?;
            let mut trie: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(self.map_mut(name)?)
                .map_err(|source| LoadError::Map { map: name, source })?;
            let map_err = |source| LoadError::Map { map: name, source };
            let wanted: Vec<(u32, [u8; 16])> = list.iter().map(|c| c.trie_key()).collect();
            // The trie becomes exactly the list: new entries first, then those no longer
            // listed go (a reload that drops a CIDR must let its traffic through again).
            for &(len, addr) in &wanted {
                trie.insert(&Key::new(len, addr), 1, 0).map_err(map_err)?;
            }
            let stale: Vec<Key<[u8; 16]>> = trie
                .keys()
                .collect::<Result<Vec<_>, _>>()
                .map_err(map_err)?
                .into_iter()
                .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
                .collect();
            for key in &stale {
                trie.remove(key).map_err(map_err)?;
            }
            self.set_hints(hint_index, new_hints)?;
        }
        let mut cfg: Array<_, FilterConfig> = Array::try_from(self.map_mut(map_names::CONFIG)?)
            .map_err(|source| LoadError::Map {
                map: map_names::CONFIG,
                source,
            })?;
        cfg.set(0, config, 0).map_err(|source| LoadError::Map {
            map: map_names::CONFIG,
            source,
        })?;
        Ok(())
    }

    /// The `LIST_HINTS` entry of one list.
    fn hints(&mut self, list: u32) -> Result<ListHints, LoadError> {
        self.hints_map()?.get(&list, 0).map_err(hints_error)
    }

    fn set_hints(&mut self, list: u32, value: ListHints) -> Result<(), LoadError> {
        self.hints_map()?.set(list, value, 0).map_err(hints_error)
    }

    fn hints_map(&mut self) -> Result<Array<&mut MapData, ListHints>, LoadError> {
        Array::try_from(self.map_mut(map_names::LIST_HINTS)?).map_err(hints_error)
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, LoadError> {
        self.ebpf.map_mut(name).ok_or(LoadError::MissingMap(name))
    }

    /// Per-CPU counters and last results.
    pub fn cpu_state(&self) -> Result<PerCpuArray<&MapData, CpuState>, LoadError> {
        let map = self
            .ebpf
            .map(map_names::CPU_STATE)
            .ok_or(LoadError::MissingMap(map_names::CPU_STATE))?;
        PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
            map: map_names::CPU_STATE,
            source,
        })
    }

    /// Pins the counters map under `dir` so `sip-fastpath stats` can read it while we run.
    pub fn pin_state(&self, dir: &Path) -> Result<(), LoadError> {
        let name = map_names::CPU_STATE;
        let map = self.ebpf.map(name).ok_or(LoadError::MissingMap(name))?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path); // a stale pin from a crashed run
        map.pin(&path).map_err(|source| LoadError::Pin {
            map: name,
            path: path.display().to_string(),
            source,
        })
    }

    /// Attaches the main program to `iface`.
    pub fn attach(&mut self, iface: &str, mode: XdpMode) -> Result<XdpLinkId, LoadError> {
        let mode_name = match mode {
            XdpMode::Driver => "native",
            XdpMode::Skb => "skb",
            XdpMode::Hardware => "offload",
            XdpMode::Default => "default",
        };
        self.xdp(PROGRAM_NAME)?
            .attach(iface, mode)
            .map_err(|source| LoadError::Attach {
                iface: iface.to_string(),
                mode: mode_name,
                source,
            })
    }

    pub fn detach(&mut self, link: XdpLinkId) -> Result<(), LoadError> {
        self.xdp(PROGRAM_NAME)?
            .detach(link)
            .map_err(|source| LoadError::Program {
                name: PROGRAM_NAME,
                source,
            })
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoadError> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(LoadError::Program {
            name,
            source: aya::programs::ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(|source| LoadError::Program { name, source })?;
    prog.load()
        .map_err(|source| LoadError::Program { name, source })
}

//! sip-fastpath's XDP program: pre-filters SIP over UDP and steers each Call-ID to one CPU.
//!
//! Order of the checks (each one counted by its reason in `CPU_STATE`):
//! 1. not UDP to a SIP port → pass untouched; fragments and malformed headers → pass; a TCP
//!    SYN to a SIP TCP/TLS port (`sip_tcp_ports`) → blocklist, then rate limit (drop), else
//!    pass (the program never looks into TCP streams);
//! 2. source in `BLOCKLIST` → drop;
//! 3. first line not SIP-shaped → drop (before the rate limiter, so junk from spoofed sources
//!    cannot churn the limiter's table and evict the state of real sources);
//! 4. source over its rate, unless in `ALLOWLIST` → drop;
//! 5. keep-alive → pass; `User-Agent` names a scanner → drop;
//! 6. Call-ID hashed → redirect through `CPUS` to `steer_cpus[slot_for_hash(hash, steer_len)]`;
//!    no Call-ID → pass (userspace answers 400); steering off → pass.
//!
//! Anything unexpected passes: the program never drops what userspace must answer.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod net;
#[cfg(target_arch = "bpf")]
mod sip;
#[cfg(target_arch = "bpf")]
mod swar;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
        macros::{map, xdp},
        maps::{Array, CpuMap, LpmTrie, PerCpuArray, lpm_trie::Key},
        programs::XdpContext,
    };
    use aya_log_ebpf::warn;
    use sip_common::{
        CpuState, FLAG_ALLOWLIST, FLAG_BLOCKLIST, FLAG_RATE_LIMIT, FLAG_STEERING, FilterConfig,
        HINT_WORDS, ListHints, MAX_CIDRS, MAX_STEER_CPUS, RATE_SETS, RateSet, SourceAddr,
        WorkerStats, hint_bit, hint_list, method, rate_set, rate_tag, reason, slot_for_hash,
        verdict,
    };

    use crate::net::{self, Packet, SipDatagram, Source};
    use crate::sip::{self, Shape};

    #[map]
    static CONFIG: Array<FilterConfig> = Array::with_max_entries(1, 0);
    #[map]
    static CPU_STATE: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);
    #[map]
    static BLOCKLIST: LpmTrie<SourceAddr, u32> = LpmTrie::with_max_entries(MAX_CIDRS, 0);
    #[map]
    static ALLOWLIST: LpmTrie<SourceAddr, u32> = LpmTrie::with_max_entries(MAX_CIDRS, 0);
    /// Which sources each list may hold (`ListHints`), by `hint_list` index: the tries are asked
    /// only about those.
    #[map]
    static LIST_HINTS: Array<ListHints> = Array::with_max_entries(2, 0);
    /// The rate limiter's table (see `RateSet`): an array, whose lookup the verifier inlines.
    /// An LRU hash map cost a helper call (hashing, a bucket walk) per packet and took locks to
    /// insert, which a flood from spoofed sources does on every packet.
    #[map]
    static RATE: Array<RateSet> = Array::with_max_entries(RATE_SETS, 0);
    #[map]
    static CPUS: CpuMap = CpuMap::with_max_entries(MAX_STEER_CPUS as u32, 0);
    /// Written by the daemon only (see `WorkerStats`); lives here so it is created and pinned
    /// with the other maps.
    #[map]
    static WORKERS: Array<WorkerStats> = Array::with_max_entries(MAX_STEER_CPUS as u32, 0);

    struct Outcome {
        reason: u32,
        hash: Option<u64>,
    }

    impl Outcome {
        fn of(reason: u32) -> Self {
            Self { reason, hash: None }
        }
    }

    #[xdp]
    pub fn sip_fastpath(ctx: XdpContext) -> u32 {
        let Some(st) = CPU_STATE.get_ptr_mut(0) else {
            return xdp_action::XDP_PASS;
        };
        // SAFETY: this CPU's entry; `first_line` sets the method once it recognises one.
        unsafe { (*st).last.method = method::NONE };
        let out = try_run(&ctx, st);
        finish(st, out)
    }

    /// Counts the outcome and turns it into the XDP action.
    #[inline(always)]
    fn finish(st: *mut CpuState, out: Outcome) -> u32 {
        let v = reason::verdict_of(out.reason);
        // SAFETY: `st` is this CPU's entry of a per-CPU array, valid for the whole run and not
        // touched by any other CPU; the indices are checked against the array lengths.
        unsafe {
            let r = out.reason as usize;
            if r < reason::COUNT {
                (*st).reasons[r] += 1;
            }
            let m = (*st).last.method as usize;
            if m < method::COUNT {
                (*st).methods[m] += 1;
            }
            (*st).last.verdict = v;
            (*st).last.reason = out.reason;
            (*st).last.has_hash = out.hash.is_some() as u32;
            (*st).last.call_id_hash = out.hash.unwrap_or(0);
        }
        match v {
            verdict::REDIRECT => xdp_action::XDP_REDIRECT,
            verdict::DROP => xdp_action::XDP_DROP,
            _ => xdp_action::XDP_PASS,
        }
    }

    /// The same attach point doing nothing: the baseline `bench-xdp` measures next to the real
    /// program, so the ratio cancels the cost of the test-run machinery itself.
    #[xdp]
    pub fn sip_fastpath_empty(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// The checks in the order of the module doc.
    #[inline(always)]
    fn try_run(ctx: &XdpContext, st: *mut CpuState) -> Outcome {
        let Some(cfg) = CONFIG.get(0) else {
            return Outcome::of(reason::OTHER);
        };
        let d = match net::classify(ctx, cfg) {
            Packet::Sip(d) => d,
            Packet::Syn(src) => return Outcome::of(syn_verdict(cfg, st, src)),
            Packet::Other => return Outcome::of(reason::OTHER),
            Packet::Fragment => return Outcome::of(reason::FRAGMENT),
            Packet::Malformed => return Outcome::of(reason::MALFORMED),
        };
        if cfg.flags & FLAG_BLOCKLIST != 0 && listed(&BLOCKLIST, hint_list::BLOCKLIST, &d.src) {
            return Outcome::of(reason::BLOCKLIST);
        }
        // Each header layout (VLAN or not, IPv4 options, IPv6 extension headers) gives the
        // payload different offsets; read back from map memory they are one unknown pair, so
        // the verifier checks the SIP part once rather than once per layout.
        // SAFETY: this CPU's entry (see the entry point).
        unsafe {
            (*st).scratch.start = d.start as u32;
            (*st).scratch.end = d.end as u32;
        }
        let Some(d) = datagram_from_scratch(st, d.src) else {
            return Outcome::of(reason::MALFORMED);
        };
        let shape = sip::first_line(ctx, &d, st);
        if let Shape::NotSip = shape {
            return Outcome::of(reason::NOT_SIP);
        }
        if cfg.flags & FLAG_RATE_LIMIT != 0 && over_rate(cfg, st, &d.src) {
            return Outcome::of(reason::RATE_LIMIT);
        }
        match shape {
            Shape::Keepalive => return Outcome::of(reason::KEEPALIVE),
            Shape::Empty => return Outcome::of(reason::EMPTY),
            Shape::Sip | Shape::NotSip => {}
        }
        // Scanners send requests (OPTIONS, REGISTER, INVITE): a response's User-Agent is not
        // looked for, so its scan ends at the Call-ID.
        // SAFETY: this CPU's entry (see the entry point); `first_line` set the method.
        let want_ua = cfg.num_scanners > 0 && unsafe { (*st).last.method } != method::RESPONSE;
        let Some(z) = sip::canon_zero(ctx) else {
            return Outcome::of(reason::MALFORMED);
        };
        sip::scan_headers(ctx, st, want_ua, z);
        // From here on, only what is in `scratch` and the config: every way the scan ended
        // continues in one verifier state.
        let (Some(cfg), Some(d)) = (CONFIG.get(0), datagram_from_scratch(st, Source([0; 16])))
        else {
            return Outcome::of(reason::UNSTEERED);
        };
        if sip::is_scanner(ctx, &d, st, cfg) {
            return Outcome::of(reason::SCANNER);
        }
        let Some(hash) = sip::call_id_hash(ctx, &d, st) else {
            return Outcome::of(reason::NO_CALL_ID);
        };
        let reason = steer(ctx, cfg, st, hash);
        Outcome {
            reason,
            hash: Some(hash),
        }
    }

    /// The payload offsets as stored in `scratch`, read back as numbers the verifier knows
    /// nothing about but their bounds: every path that reaches a read-back continues in the same
    /// verifier state, so what follows is checked once, not once per header layout or per way
    /// the checks before it went.
    #[inline(always)]
    fn datagram_from_scratch(st: *mut CpuState, src: Source) -> Option<SipDatagram> {
        // SAFETY: this CPU's entry (see the entry point).
        let (start, end) = unsafe {
            (
                sip::reload(&raw const (*st).scratch.start),
                sip::reload(&raw const (*st).scratch.end),
            )
        };
        (start <= end && end <= sip::MAX_OFFSET).then_some(SipDatagram { src, start, end })
    }

    /// A new TCP connection to a SIP port: the blocklist and the per-source rate (shared with
    /// the source's UDP SIP traffic), as for a datagram; what passes is the stack's to accept.
    #[inline(always)]
    fn syn_verdict(cfg: &FilterConfig, st: *mut CpuState, src: Source) -> u32 {
        if cfg.flags & FLAG_BLOCKLIST != 0 && listed(&BLOCKLIST, hint_list::BLOCKLIST, &src) {
            return reason::TCP_SYN_BLOCKLIST;
        }
        if cfg.flags & FLAG_RATE_LIMIT != 0 && over_rate(cfg, st, &src) {
            return reason::TCP_SYN_RATE_LIMIT;
        }
        reason::TCP_SYN
    }

    /// An LPM trie key laid out so that its address sits 8-byte aligned on the stack: `Key` is
    /// packed (the address at offset 4), and storing a word at a stack offset that is not a
    /// multiple of its size is refused by the verifier, so a `Key` built in place gets its
    /// address a byte at a time.
    #[repr(C, align(8))]
    struct AlignedKey {
        _pad: u32,
        prefix_len: u32,
        data: Source,
    }

    /// True if `src` is in one of the CIDRs of `trie` (a full-length lookup), whose hints are
    /// entry `hints` of `LIST_HINTS`. A source whose hint bit is clear is not in the list; the
    /// trie, a helper call, is asked about the others only.
    #[inline(always)]
    fn listed(trie: &LpmTrie<SourceAddr, u32>, hints: u32, src: &Source) -> bool {
        if let Some(h) = LIST_HINTS.get(hints) {
            let bit = hint_bit(src.words()) as usize;
            if h.words[(bit / 64) & (HINT_WORDS - 1)] >> (bit % 64) & 1 == 0 {
                return false;
            }
        }
        let k = AlignedKey {
            _pad: 0,
            prefix_len: 128,
            data: *src,
        };
        // SAFETY: `Key<SourceAddr>` is `repr(C, packed)`: a `u32` prefix length followed by the
        // 16 address bytes, which is exactly `k` from `prefix_len` on (no padding between
        // them: `prefix_len` ends at offset 8, where `data` starts); `k` outlives the lookup.
        let key = unsafe { &*(&raw const k.prefix_len).cast::<Key<SourceAddr>>() };
        trie.get(key).is_some()
    }

    /// GCRA, the virtual-time form of a token bucket: a source may run at most `burst` packets
    /// ahead of its allowed rate. A tag and a time per source, in a set of the `RATE` table (see
    /// `RateSet`); what concurrent updates from two CPUs can do is said where the set is written.
    #[inline(always)]
    fn over_rate(cfg: &FilterConfig, st: *mut CpuState, src: &Source) -> bool {
        let tag = rate_tag(src.words(), cfg.rate_key);
        let Some(set) = RATE.get_ptr_mut(rate_set(tag)) else {
            return false;
        };
        let now = coarse_now(st);
        // SAFETY: `set` points to the map's value at this index, valid during this run. Another
        // CPU may update the same set at the same time (rarely: RSS keeps a source on one queue,
        // and two sources share a set 1 time in 32,768); the worst interleaving pairs one
        // source's tag with the other's time, which errs by at most one burst for that source.
        unsafe {
            let way = if (*set).tags[0] == tag {
                0
            } else if (*set).tags[1] == tag {
                1
            } else {
                // Not in its set: it takes the way whose time is earliest, and starts afresh.
                let way = ((*set).tats[1] < (*set).tats[0]) as usize;
                (*set).tags[way] = tag;
                (*set).tats[way] = 0;
                way
            };
            let tat = (*set).tats[way];
            let next = if tat > now { tat } else { now } + cfg.rate_interval_ns;
            if next - now > cfg.rate_tolerance_ns {
                // Over its rate, unless allowlisted: asked only here, as most packets are
                // under their source's rate. (An allowlisted source keeps a way of its set,
                // its time held at the limit.)
                return !(cfg.flags & FLAG_ALLOWLIST != 0
                    && listed(&ALLOWLIST, hint_list::ALLOWLIST, src));
            }
            (*set).tats[way] = next;
        }
        false
    }

    /// The kernel's coarse clock (advanced once per tick, 1–10 ms), as this CPU last read it in
    /// the current tick (`TickClock`): a limiter needs no better resolution, and its helper call
    /// costs ~20 ns, against one inlined load for `jiffies`. It may lag real time by up to two
    /// ticks, which the loader adds to the tolerance (`CLOCK_QUANTUM_NS`).
    #[inline(always)]
    fn coarse_now(st: *mut CpuState) -> u64 {
        // SAFETY: a BPF helper with no arguments; the verifier turns it into a load of `jiffies`.
        let jiffies = unsafe { bpf_jiffies64() };
        // SAFETY: this CPU's entry (see the entry point).
        unsafe {
            // The first packet on a CPU finds `jiffies` 0 here, which the kernel's never is
            // (it starts near 2^32 - 300 s worth of ticks and only grows).
            if (*st).clock.jiffies != jiffies {
                (*st).clock.jiffies = jiffies;
                // SAFETY: a BPF helper with no arguments.
                (*st).clock.ns = bpf_ktime_get_coarse_ns();
            }
            (*st).clock.ns
        }
    }

    #[inline(always)]
    fn steer(ctx: &XdpContext, cfg: &FilterConfig, st: *mut CpuState, hash: u64) -> u32 {
        let len = cfg.steer_len;
        if cfg.flags & FLAG_STEERING == 0 || len == 0 || len as usize > MAX_STEER_CPUS {
            return reason::UNSTEERED;
        }
        let slot = slot_for_hash(hash, len) as usize;
        // LLVM knows `slot < len <= 64` and would drop the mask; kept through an opaque read so
        // that the index's bound never rests on the verifier following the multiplication.
        // SAFETY: reads back the local just written.
        let slot = unsafe { core::ptr::read_volatile(&slot) } & (MAX_STEER_CPUS - 1);
        let cpu = cfg.steer_cpus[slot];
        match CPUS.redirect(cpu, xdp_action::XDP_PASS as u64) {
            Ok(_) => reason::STEERED,
            Err(_) => {
                // A steering table naming a CPU without a CPUMAP entry is a control-plane bug:
                // say so once per CPU, not per packet.
                // SAFETY: this CPU's entry (see the entry point).
                unsafe {
                    if (*st).scratch.warned == 0 {
                        (*st).scratch.warned = 1;
                        warn!(
                            ctx,
                            "steering table names cpu {} which has no CPUMAP entry", cpu
                        );
                    }
                }
                reason::UNSTEERED
            }
        }
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // The XDP program only exists for the BPF target; `cargo xtask build` builds it.
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

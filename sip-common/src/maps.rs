//! Map keys and values shared by the XDP program and the daemon. All `#[repr(C)]`, `Copy`, with
//! explicit padding so both compilers agree on the layout (the BPF target and x86_64 align `u64`
//! the same way, but implicit padding is uninitialised memory the verifier refuses to copy).

/// Most SIP ports the XDP program matches on (UDP destination port).
pub const MAX_SIP_PORTS: usize = 8;
/// Most scanner `User-Agent` signatures.
pub const MAX_SCANNERS: usize = 8;
/// Longest scanner signature, in bytes (two 8-byte words compared in the kernel).
pub const MAX_SCANNER_LEN: usize = 16;
/// Bytes of a `User-Agent` value searched for scanner signatures.
pub const SCANNER_WINDOW: usize = 48;
/// Most CPUs in the steering table.
pub const MAX_STEER_CPUS: usize = 64;
/// Entries in each of the blocklist and allowlist LPM tries.
pub const MAX_CIDRS: u32 = 16_384;
/// Sets of the rate limiter's table (`RATE`, an array map: its lookup is inlined by the
/// verifier, with no helper call and no lock, also while a flood brings a new source per packet).
pub const RATE_SETS: u32 = 32_768;
/// Sources per set of the rate limiter's table.
pub const RATE_WAYS: usize = 2;
/// Sources the rate limiter tracks at once.
pub const MAX_RATE_SOURCES: u32 = RATE_SETS * RATE_WAYS as u32;
const _: () = assert!(RATE_SETS.is_power_of_two() && RATE_SETS > 1);

/// Names of the maps in the object file, so the loader and `stats` cannot drift from the program.
pub mod map_names {
    pub const CONFIG: &str = "CONFIG";
    pub const CPU_STATE: &str = "CPU_STATE";
    pub const BLOCKLIST: &str = "BLOCKLIST";
    pub const ALLOWLIST: &str = "ALLOWLIST";
    pub const LIST_HINTS: &str = "LIST_HINTS";
    pub const RATE: &str = "RATE";
    pub const CPUS: &str = "CPUS";
    pub const WORKERS: &str = "WORKERS";
}

/// Name of the XDP entry point in the object, and of the empty baseline program.
pub const PROGRAM_NAME: &str = "sip_fastpath";
pub const EMPTY_PROGRAM_NAME: &str = "sip_fastpath_empty";

/// How far the rate limiter's clock may lag behind real time: two ticks of 10 ms at
/// `CONFIG_HZ=100`, the coarsest. Its clock is the kernel's coarse one (advanced once per tick),
/// read again only when `jiffies` changes (see [`TickClock`]), which may happen in the moment
/// between the tick's `jiffies` update and its clock update: one more tick. Added to the
/// limiter's tolerance: while the clock stands still a source's virtual time runs ahead by one
/// interval per packet.
pub const CLOCK_QUANTUM_NS: u64 = 20_000_000;

/// `FilterConfig::flags`: redirect SIP messages to `steer_cpus[hash % steer_len]` via the CPUMAP.
pub const FLAG_STEERING: u32 = 1 << 0;
/// `FilterConfig::flags`: the rate limiter is on.
pub const FLAG_RATE_LIMIT: u32 = 1 << 1;
/// `FilterConfig::flags`: the blocklist holds at least one entry (skip the lookup otherwise).
pub const FLAG_BLOCKLIST: u32 = 1 << 2;
/// `FilterConfig::flags`: the allowlist holds at least one entry.
pub const FLAG_ALLOWLIST: u32 = 1 << 3;

/// One scanner signature, lowercased, as two little-endian words and the masks that select its
/// `len` bytes (the second mask is zero for signatures of 8 bytes or fewer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScannerSig {
    pub words: [u64; 2],
    pub masks: [u64; 2],
}

/// The single entry of the `CONFIG` array map: everything the XDP program needs per packet in
/// one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// UDP destination ports that carry SIP, in host byte order; the first `num_ports` count.
    pub ports: [u16; MAX_SIP_PORTS],
    pub num_ports: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// TCP destination ports of the SIP TCP and TLS listeners, host byte order: SYNs to them go
    /// through the blocklist and the rate limiter; the first `num_tcp_ports` count.
    pub tcp_ports: [u16; MAX_SIP_PORTS],
    pub num_tcp_ports: u32,
    pub _pad: u32,
    /// Rate limiter (GCRA, the token bucket in virtual-time form): nanoseconds between packets
    /// at the allowed rate, and how far ahead of real time a source may run (the burst, plus
    /// [`CLOCK_QUANTUM_NS`]).
    pub rate_interval_ns: u64,
    pub rate_tolerance_ns: u64,
    /// Key of [`rate_tag`], drawn at random by the loader: which sources share a set of the
    /// rate table is not known outside the host.
    pub rate_key: [u64; 2],
    pub num_scanners: u32,
    pub steer_len: u32,
    pub scanners: [ScannerSig; MAX_SCANNERS],
    /// CPU ids to redirect to; the first `steer_len` count.
    pub steer_cpus: [u32; MAX_STEER_CPUS],
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            ports: [0; MAX_SIP_PORTS],
            num_ports: 0,
            flags: 0,
            tcp_ports: [0; MAX_SIP_PORTS],
            num_tcp_ports: 0,
            _pad: 0,
            rate_interval_ns: 0,
            rate_tolerance_ns: 0,
            rate_key: [0; 2],
            num_scanners: 0,
            steer_len: 0,
            scanners: [ScannerSig {
                words: [0; 2],
                masks: [0; 2],
            }; MAX_SCANNERS],
            steer_cpus: [0; MAX_STEER_CPUS],
        }
    }
}

/// A source address as the LPM tries and the rate limiter key it: IPv6, with IPv4 sources as
/// IPv4-mapped addresses (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so one map serves both families.
pub type SourceAddr = [u8; 16];

/// Prefix length in the IPv4-mapped space for an IPv4 CIDR of `len` bits.
pub const fn mapped_v4_prefix_len(len: u32) -> u32 {
    96 + len
}

/// The IPv4-mapped form of an IPv4 address given as its four octets.
pub const fn mapped_v4(octets: [u8; 4]) -> SourceAddr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
    ]
}

/// Words of a [`ListHints`] bitmap: 2^17 bits, see [`hint_bit`].
pub const HINT_WORDS: usize = 2048;
/// Indices of the `LIST_HINTS` array: the hints of the blocklist and of the allowlist.
pub mod hint_list {
    pub const BLOCKLIST: u32 = 0;
    pub const ALLOWLIST: u32 = 1;
}

/// Which sources a CIDR list may hold, coarsely, so that the XDP program asks its LPM trie only
/// about those: a trie lookup is a helper call, ~10 ns a packet on the hosts measured (an array
/// lookup is inlined by the verifier). Bit [`hint_bit`] of a source is set when a CIDR of the
/// list covers some address that falls on the same bit. Set bits only cost a lookup; a clear
/// bit must mean "not listed", so the loader sets a CIDR's bits before it enters the trie and
/// clears them after it left.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListHints {
    pub words: [u64; HINT_WORDS],
}

/// The bit of a [`ListHints`] bitmap a source address (as two native-endian words, the form
/// the XDP program holds) falls on: an IPv4-mapped address's /16 (bits 0..65,536), any other
/// address's first 16 bits (65,536..131,072).
#[inline(always)]
pub const fn hint_bit(words: [u64; 2]) -> u32 {
    let hi = words[1].to_ne_bytes();
    if words[0] == 0 && hi[0] == 0 && hi[1] == 0 && hi[2] == 0xff && hi[3] == 0xff {
        (hi[4] as u32) << 8 | hi[5] as u32
    } else {
        let lo = words[0].to_ne_bytes();
        1 << 16 | (lo[0] as u32) << 8 | lo[1] as u32
    }
}

/// A source address as the two native-endian words of its 16 bytes: the form the XDP program
/// holds it in, which [`rate_tag`] and [`hint_bit`] take.
pub const fn source_words(a: &SourceAddr) -> [u64; 2] {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        lo[i] = a[i];
        hi[i] = a[8 + i];
        i += 1;
    }
    [u64::from_ne_bytes(lo), u64::from_ne_bytes(hi)]
}

/// [`mapped_v4`] as the two native-endian words of its 16 bytes, built without a byte array
/// (what the XDP program keys the rate table with).
#[inline(always)]
pub const fn mapped_v4_words(octets: [u8; 4]) -> [u64; 2] {
    [
        0,
        u64::from_ne_bytes([0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3]]),
    ]
}

/// One set of the rate limiter's table: up to [`RATE_WAYS`] sources, each as its [`rate_tag`]
/// and its GCRA theoretical arrival time (coarse clock time, see [`TickClock`]). An empty way has
/// tag and time 0.
///
/// A source not in its set takes the way whose time is earliest. While that time has passed
/// (`tat <= now`), forgetting the source loses nothing: a new entry starts with a full burst,
/// which is what that source had anyway. Only a third source in a set whose two sources are
/// both over their rate makes one of them start afresh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateSet {
    pub tags: [u64; RATE_WAYS],
    pub tats: [u64; RATE_WAYS],
}

/// The rate table's hash of a source address (its two native-endian words): murmur3's
/// finalizer over the key-whitened words, so every output bit depends on every address bit
/// and, without the key, nobody outside the host can pick addresses that share a set. Not a
/// cryptographic MAC: the worst a found collision does is make one source start with a fresh
/// burst. [`rate_set`] of it is the set; the whole value is the tag compared within the set.
#[inline(always)]
pub const fn rate_tag(words: [u64; 2], key: [u64; 2]) -> u64 {
    crate::hash::fmix64(crate::hash::fmix64(words[0] ^ key[0]) ^ words[1] ^ key[1])
}

/// The set of the rate table a tag belongs to: its top bits.
#[inline(always)]
pub const fn rate_set(tag: u64) -> u32 {
    (tag >> (64 - RATE_SETS.trailing_zeros())) as u32
}

/// Verdicts as the XDP program reports them (`LastResult::verdict`).
pub mod verdict {
    pub const PASS: u32 = 0;
    pub const REDIRECT: u32 = 1;
    pub const DROP: u32 = 2;

    pub const fn name(v: u32) -> &'static str {
        match v {
            PASS => "pass",
            REDIRECT => "redirect",
            DROP => "drop",
            _ => "unknown",
        }
    }
}

/// Why the program returned its verdict. Each reason belongs to exactly one verdict.
pub mod reason {
    use super::verdict;

    /// Not IPv4/IPv6 UDP to a SIP port: untouched.
    pub const OTHER: u32 = 0;
    /// An IPv4 fragment or an IPv6 packet with extension headers: passed unsteered.
    pub const FRAGMENT: u32 = 1;
    /// Truncated or inconsistent IP/UDP headers: left to the stack, which counts its own errors.
    pub const MALFORMED: u32 = 2;
    /// CRLF or STUN keep-alive (RFC 5626 §3.5.1, §4.4.1).
    pub const KEEPALIVE: u32 = 3;
    /// SIP-shaped but no Call-ID found: passed to the default worker, which answers 400.
    pub const NO_CALL_ID: u32 = 4;
    /// SIP with a Call-ID, but steering is off or the CPU has no CPUMAP entry.
    pub const UNSTEERED: u32 = 5;
    /// Redirected through the CPUMAP to the CPU of its Call-ID.
    pub const STEERED: u32 = 6;
    pub const BLOCKLIST: u32 = 7;
    pub const RATE_LIMIT: u32 = 8;
    /// The first line is neither a SIP request line nor a status line.
    pub const NOT_SIP: u32 = 9;
    pub const SCANNER: u32 = 10;
    /// A UDP datagram to a SIP port with no payload: passed (nothing to answer, nothing to
    /// fear), and not a keep-alive.
    pub const EMPTY: u32 = 11;
    /// A TCP SYN to a SIP TCP/TLS port (`sip_tcp_ports`) that passed the checks below.
    pub const TCP_SYN: u32 = 12;
    /// A TCP SYN from a source in the blocklist.
    pub const TCP_SYN_BLOCKLIST: u32 = 13;
    /// A TCP SYN from a source over its rate (the same per-source limit as SIP over UDP).
    pub const TCP_SYN_RATE_LIMIT: u32 = 14;
    pub const COUNT: usize = 15;

    pub const fn name(r: u32) -> &'static str {
        match r {
            OTHER => "other",
            FRAGMENT => "fragment",
            MALFORMED => "malformed",
            KEEPALIVE => "keepalive",
            NO_CALL_ID => "no_call_id",
            UNSTEERED => "unsteered",
            STEERED => "steered",
            BLOCKLIST => "blocklist",
            RATE_LIMIT => "rate_limit",
            NOT_SIP => "not_sip",
            SCANNER => "scanner",
            EMPTY => "empty",
            TCP_SYN => "tcp_syn",
            TCP_SYN_BLOCKLIST => "tcp_syn_blocklist",
            TCP_SYN_RATE_LIMIT => "tcp_syn_rate_limit",
            _ => "unknown",
        }
    }

    pub const fn verdict_of(r: u32) -> u32 {
        match r {
            STEERED => verdict::REDIRECT,
            BLOCKLIST | RATE_LIMIT | NOT_SIP | SCANNER | TCP_SYN_BLOCKLIST | TCP_SYN_RATE_LIMIT => {
                verdict::DROP
            }
            _ => verdict::PASS,
        }
    }
}

/// SIP methods counted by the XDP program (responses count as one bucket).
pub mod method {
    pub const INVITE: u32 = 0;
    pub const ACK: u32 = 1;
    pub const BYE: u32 = 2;
    pub const CANCEL: u32 = 3;
    pub const REGISTER: u32 = 4;
    pub const OPTIONS: u32 = 5;
    pub const OTHER_REQUEST: u32 = 6;
    pub const RESPONSE: u32 = 7;
    pub const COUNT: usize = 8;
    /// Not a SIP message (no first line was recognised): not counted.
    pub const NONE: u32 = 0xff;

    pub const fn name(m: u32) -> &'static str {
        match m {
            INVITE => "INVITE",
            ACK => "ACK",
            BYE => "BYE",
            CANCEL => "CANCEL",
            REGISTER => "REGISTER",
            OPTIONS => "OPTIONS",
            OTHER_REQUEST => "other_request",
            RESPONSE => "response",
            _ => "none",
        }
    }
}

/// What the program decided about the last packet it saw on this CPU. `sip-fastpath classify`
/// reads it after a `BPF_PROG_TEST_RUN`; it costs a few stores per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastResult {
    pub verdict: u32,
    pub reason: u32,
    pub method: u32,
    /// 1 when `call_id_hash` holds the hash of a Call-ID found in the packet.
    pub has_hash: u32,
    pub call_id_hash: u64,
}

/// Working memory of the XDP program for one packet. Offsets found inside a loop are stored here
/// and read back after it: a value read from map memory is one unknown number to the verifier,
/// so it checks the code after the loop once instead of once per way the loop can end.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    /// Start of the second line (the first header).
    pub line2: u32,
    /// Just past the header name `Call-ID` / `i`, or 0 if none was seen.
    pub call_id: u32,
    /// Just past the header name `User-Agent`, or 0 if none was seen.
    pub user_agent: u32,
    /// Start of the header value being examined.
    pub value: u32,
    /// The UDP payload as `[start, end)` frame offsets.
    pub start: u32,
    pub end: u32,
    /// Set once this CPU has logged a steering problem (log once, not per packet).
    pub warned: u32,
    /// The first line's `method` bucket, until the line is known to be SIP-shaped.
    pub method: u32,
    /// How many bytes of `window` the scanner check looks for signatures at: the value's
    /// length, at most `SCANNER_WINDOW`.
    pub window_len: u32,
    pub _pad: u32,
    /// The `User-Agent` value's first bytes for the scanner check, case-folded, zero from the
    /// value's end on: words 0..8 (a signature starting in the window's last byte ends in
    /// them); words 8..16 are where the value's start is lined up when it lies in the
    /// datagram's last 64 bytes.
    pub window: [u64; 16],
}

/// The per-CPU entry of `CPU_STATE`: counters, the last result and the scratch space, fetched
/// with one lookup per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuState {
    /// Packets per `reason` (each reason implies its verdict).
    pub reasons: [u64; reason::COUNT],
    /// SIP messages per `method` (counted once the first line is recognised).
    pub methods: [u64; method::COUNT],
    pub last: LastResult,
    pub scratch: Scratch,
    pub clock: TickClock,
}

/// The rate limiter's clock on one CPU: `bpf_ktime_get_coarse_ns` as read when `jiffies` last
/// changed. `bpf_jiffies64` is inlined by the verifier into one load (a helper call measured
/// ~20 ns a packet in bench-xdp), and the coarse clock only moves at a tick, when `jiffies`
/// moves too; so the helper runs once per tick per CPU instead of once per packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickClock {
    pub jiffies: u64,
    pub ns: u64,
}

impl Default for CpuState {
    fn default() -> Self {
        Self {
            reasons: [0; reason::COUNT],
            methods: [0; method::COUNT],
            last: LastResult::default(),
            scratch: Scratch::default(),
            clock: TickClock::default(),
        }
    }
}

/// One entry per worker in the `WORKERS` array map. The XDP program never touches it: the daemon
/// publishes its workers' counters there a few times a second so that `sip-fastpath stats`, a
/// separate process, can read them from the pinned map next to the kernel's own counters.
/// Ways a request's destination is found, counted in [`WorkerStats::routed`].
pub const ROUTED_KINDS: usize = 6;
/// Reasons the routing rules refuse a request, counted in [`WorkerStats::refused`].
pub const REFUSAL_KINDS: usize = 5;
/// What becomes of a datagram a proxy handles, counted in [`WorkerStats::outcomes`].
pub const OUTCOME_KINDS: usize = 15;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Datagrams the worker's socket received.
    pub received: u64,
    /// Datagrams with a Call-ID whose hash names another worker's CPU: the steering failed.
    pub misrouted: u64,
    /// Datagrams in which the worker found no Call-ID.
    pub no_call_id: u64,
    /// New requests from the outside, and from the inside (backends, `trusted`).
    pub from_outside: u64,
    pub from_inside: u64,
    /// Requests forwarded, by how their destination was found: pool, route, flow, dns, static,
    /// dialog (in that order).
    pub routed: [u64; ROUTED_KINDS],
    /// Requests the routing rules refused: bad flow token, relay denied, domain not served, no
    /// route, unknown domain (in that order).
    pub refused: [u64; REFUSAL_KINDS],
    /// STUN Binding requests and CRLF pings answered.
    pub keepalives: u64,
    /// Datagrams this worker's proxy handled (from its socket, or handed over by another).
    pub handled: u64,
    /// What became of them, one outcome each: forwarded, relayed, answered 2xx..6xx, absorbed,
    /// keep-alive, dropped by reason (the userspace `Outcome` order).
    pub outcomes: [u64; OUTCOME_KINDS],
    /// Requests waiting for DNS now: handled, their outcome not known yet.
    pub parked: u64,
    /// Final responses the timers made (408): not outcomes of a received datagram.
    pub timer_replies: u64,
    /// Datagrams for another worker dropped because its queue was full.
    pub handoff_dropped: u64,
    /// The CPU the worker is pinned to.
    pub cpu: u32,
    /// 1 while the worker runs.
    pub active: u32,
}

#[cfg(feature = "user")]
mod pod {
    /// Every one of these is `#[repr(C)]`, `Copy`, made only of integers and arrays of
    /// integers, with no implicit padding (the layout tests check the sizes), so every bit
    /// pattern is a valid value: what `aya::Pod` asks.
    macro_rules! pod {
        ($($t:ident),*) => {$(
            // SAFETY: see above: plain integers, no padding, every bit pattern valid.
            unsafe impl aya::Pod for super::$t {}
        )*};
    }
    pod!(
        WorkerStats,
        FilterConfig,
        RateSet,
        CpuState,
        LastResult,
        ScannerSig,
        Scratch,
        ListHints
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_implicit_padding() {
        // The sum of the fields: a gap would be uninitialised memory the verifier refuses.
        assert_eq!(size_of::<RateSet>(), 16 * RATE_WAYS);
        assert_eq!(
            size_of::<FilterConfig>(),
            2 * MAX_SIP_PORTS
                + 4
                + 4
                + 2 * MAX_SIP_PORTS
                + 4
                + 4
                + 8
                + 8
                + 16
                + 4
                + 4
                + 32 * MAX_SCANNERS
                + 4 * MAX_STEER_CPUS
        );
        assert_eq!(size_of::<Scratch>(), 10 * 4 + 16 * 8);
        assert_eq!(size_of::<TickClock>(), 2 * 8);
        assert_eq!(size_of::<ListHints>(), 8 * HINT_WORDS);
        assert_eq!(
            size_of::<CpuState>(),
            8 * reason::COUNT
                + 8 * method::COUNT
                + size_of::<LastResult>()
                + size_of::<Scratch>()
                + size_of::<TickClock>()
        );
    }

    #[test]
    fn mapped_v4_words_are_the_words_of_mapped_v4() {
        for octets in [
            [0, 0, 0, 0],
            [192, 0, 2, 10],
            [255, 255, 255, 255],
            [10, 1, 2, 3],
        ] {
            assert_eq!(mapped_v4_words(octets), source_words(&mapped_v4(octets)));
        }
    }

    #[test]
    fn rate_tags_spread_sources_over_the_sets() {
        // A /16 of IPv4 sources, as many as the table holds: no set gets more than a handful
        // (a uniform hash puts at most ~9 of 65,536 keys in one of 32,768 sets).
        let key = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
        let mut load = vec![0u32; RATE_SETS as usize];
        for i in 0..MAX_RATE_SOURCES {
            let [a, b] = (i as u16).to_be_bytes();
            let tag = rate_tag(mapped_v4_words([198, 51, a, b]), key);
            load[rate_set(tag) as usize] += 1;
        }
        let busiest = *load.iter().max().unwrap();
        let empty = load.iter().filter(|&&n| n == 0).count();
        assert!(busiest <= 10, "a set holds {busiest} sources");
        // Poisson(2): e^-2 = 13.5 % of the sets stay empty.
        assert!((3_500..5_500).contains(&empty), "{empty} empty sets");
    }

    #[test]
    fn the_key_decides_which_sources_share_a_set() {
        let a = mapped_v4_words([203, 0, 113, 7]);
        let b = mapped_v4_words([203, 0, 113, 8]);
        let sets = |key| (rate_set(rate_tag(a, key)), rate_set(rate_tag(b, key)));
        let differ = (0..64u64)
            .filter(|&k| sets([k, !k]) != sets([k + 1, !(k + 1)]))
            .count();
        assert!(
            differ > 60,
            "only {differ} of 64 key changes moved the sets"
        );
        assert_ne!(rate_tag(a, [1, 2]), rate_tag(b, [1, 2]));
    }
}

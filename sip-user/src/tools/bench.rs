//! `sip-fastpath bench-xdp`: the XDP program's cost per packet, measured with
//! `BPF_PROG_TEST_RUN` next to an empty XDP program in the same run. The ratio is what to
//! compare across machines; absolute numbers include the test-run loop itself.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::{
    control::cidr::Cidr,
    control::filter::FilterSettings,
    tools::classify::{Classifier, ClassifyError},
    tools::frame::FrameSpec,
    tools::samples,
    tools::testrun::test_run,
};

pub struct BenchRow {
    pub case: &'static str,
    pub bytes: usize,
    pub outcome: String,
    pub ns: u32,
    pub empty_ns: u32,
}

pub struct BenchReport {
    pub rows: Vec<BenchRow>,
    pub verified_instructions: Vec<(&'static str, u32)>,
}

/// Source the blocklisted case comes from (RFC 5737 TEST-NET-3).
const BLOCKED_SOURCE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);

/// The flood case: SIP from one source far over its rate, so every packet after the first
/// is dropped by the rate limiter (what a SIP flood costs per packet in the kernel).
const FLOOD_CASE: &str = "INVITE over its source's rate (a SIP flood)";

/// The filter features a bench run has on (both by default, as in the default config), so the
/// cost of each can be read as a difference.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub scanners: bool,
    pub rate_limit: bool,
}

/// The packet kinds measured, in the order of the table, each with its frame.
fn cases() -> [(&'static str, Vec<u8>); 7] {
    let call_id = samples::FILE_CALL_ID;
    let normal = FrameSpec::ipv4_to_port(5060);
    let blocked = FrameSpec {
        src: SocketAddr::new(IpAddr::V4(BLOCKED_SOURCE), 5060),
        ..normal.clone()
    };
    // The worst case: a 1,458-byte frame (14 + 20 + 8 bytes of headers).
    let full_payload = 1458 - 14 - 20 - 8;
    [
        ("INVITE with SDP", normal.build(&samples::invite(call_id))),
        ("OPTIONS", normal.build(&samples::options(call_id))),
        ("200 OK", normal.build(&samples::ok_200(call_id))),
        (
            "INVITE, Call-ID last header",
            normal.build(&samples::call_id_last(call_id, full_payload)),
        ),
        (
            "RFC 4475 longreq (past the linear data)",
            normal.build(include_bytes!("../../../tests/data/rfc4475/longreq.dat")),
        ),
        ("junk (not SIP)", normal.build(&samples::junk())),
        (
            "INVITE from blocklisted source",
            blocked.build(&samples::invite(call_id)),
        ),
    ]
}

/// The names of the packet kinds (for `--only`'s error).
pub fn case_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = cases().into_iter().map(|(name, _)| name).collect();
    names.push(FLOOD_CASE);
    names
}

/// Measures every packet kind, or with `only` those whose name contains it (case-insensitive).
pub fn run(
    repeat: u32,
    rounds: u32,
    features: Features,
    only: Option<&str>,
) -> Result<BenchReport, ClassifyError> {
    let mut settings = FilterSettings {
        blocklist: vec![Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 0)),
            len: 24,
        }],
        // The limiter is on (its lookup and update are part of the cost) at a rate the
        // benchmark's single source never reaches.
        rate_limit_pps: 1_000_000_000,
        rate_limit_burst: 1_000,
        ..FilterSettings::default()
    };
    if !features.scanners {
        settings.scanners.clear();
    }
    if !features.rate_limit {
        settings.rate_limit_pps = 0;
    }
    let mut classifier = Classifier::new(settings)?;
    let only = only.map(str::to_lowercase);
    let wants = |case: &str| {
        only.as_deref()
            .is_none_or(|o| case.to_lowercase().contains(o))
    };
    let cases = cases().into_iter().filter(|(case, _)| wants(case));
    let verified_instructions = classifier.fast_path().verified_instructions();
    let mut rows = Vec::new();
    for (case, frame) in cases {
        rows.push(measure(&mut classifier, case, &frame, repeat, rounds)?);
    }
    if features.rate_limit && wants(FLOOD_CASE) {
        // Its own program, limited to one packet a second: the first packet of the source
        // passes, every one after it meets the limiter.
        let mut flood = Classifier::new(FilterSettings {
            rate_limit_pps: 1,
            rate_limit_burst: 1,
            ..FilterSettings::default()
        })?;
        let frame = FrameSpec::ipv4_to_port(5060).build(&samples::invite(samples::FILE_CALL_ID));
        flood.classify_frame(&frame)?; // the one packet its burst allows
        rows.push(measure(&mut flood, FLOOD_CASE, &frame, repeat, rounds)?);
    }
    Ok(BenchReport {
        rows,
        verified_instructions,
    })
}

/// The best of `rounds` test runs of `frame` through the program and the empty one.
fn measure(
    classifier: &mut Classifier,
    case: &'static str,
    frame: &[u8],
    repeat: u32,
    rounds: u32,
) -> Result<BenchRow, ClassifyError> {
    let d = classifier.classify_frame(frame)?;
    let (mut best, mut best_empty) = (u32::MAX, u32::MAX);
    for _ in 0..rounds.max(1) {
        let empty = classifier.empty_program_fd()?;
        best_empty = best_empty.min(test_run(empty, frame, repeat)?.ns_per_run);
        let prog = classifier.fast_path().program_fd()?;
        best = best.min(test_run(prog, frame, repeat)?.ns_per_run);
    }
    Ok(BenchRow {
        case,
        bytes: frame.len(),
        outcome: format!("{}/{}", d.verdict, d.reason),
        ns: best,
        empty_ns: best_empty,
    })
}

impl BenchReport {
    /// A Markdown table (what the README shows).
    pub fn render(&self) -> String {
        let mut s = String::from(
            "| packet | frame bytes | verdict/reason | ns/packet | empty XDP ns/packet | ratio |\n\
             |---|---:|---|---:|---:|---:|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.1}x |\n",
                r.case,
                r.bytes,
                r.outcome,
                r.ns,
                r.empty_ns,
                r.ns as f64 / r.empty_ns.max(1) as f64
            ));
        }
        for (program, n) in &self.verified_instructions {
            s.push_str(&format!(
                "\nverifier: {program}: {n} instructions processed (limit 1,000,000)"
            ));
        }
        s.push('\n');
        s
    }
}

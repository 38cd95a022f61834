//! HEPv3 capture (`[capture]`) against a real decoder: sngrep decodes the daemon's HEP packets
//! and writes them to pcap, and tshark's SIP dissector reads every message of every call back,
//! with the ends and times the HEP chunks carried.
//! Needs root, sipp, sngrep and tshark (`cargo xtask test`).

use std::{collections::BTreeMap, time::Duration};

use tests::{
    bed::{B1, B2, Bed, CALLER, EDGE, assert_all_succeeded, config},
    collector::{Sngrep, sip_messages},
    metric_sum,
};

#[test]
fn every_message_of_every_call_reaches_the_hep_collector_whole() -> anyhow::Result<()> {
    let capture = "\n[capture]\nhep = \"127.0.0.1:9060\"\nagent_id = 77\n";
    let bed = Bed::new("cap-hep", "uas_call", &format!("{}{capture}", config(1000)))?;
    let pcap = std::env::temp_dir().join(format!("sfp-cap-hep-{}.pcap", std::process::id()));
    let mut sngrep = Sngrep::start(&bed.lan.host("edge").ns, &pcap)?;
    let calls = 10;
    let r = bed.call("uac_call", calls, 10)?;
    assert_all_succeeded(&r, calls as u64);
    std::thread::sleep(Duration::from_millis(500));
    sngrep.stop();

    let messages = sip_messages(&pcap)?;
    let mut per_call: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in &messages {
        per_call.entry(&m.call_id).or_default().push(&m.kind);
    }
    // The INVITE came from the caller to us, and went from us to a backend.
    let invites: Vec<_> = messages.iter().filter(|m| m.kind == "INVITE").collect();
    assert!(
        invites
            .iter()
            .any(|m| m.source.starts_with(CALLER) && m.destination == format!("{EDGE}:5060")),
        "{invites:?}"
    );
    assert!(
        invites.iter().any(|m| m.source == format!("{EDGE}:5060")
            && [B1, B2]
                .iter()
                .any(|b| m.destination == format!("{b}:5060"))),
        "{invites:?}"
    );
    for call_id in &r.call_ids {
        let seen = per_call.get(call_id.as_str()).cloned().unwrap_or_default();
        let count = |k: &str| seen.iter().filter(|s| **s == k).count();
        // Each request twice (received from the caller, sent to the backend), and so each
        // final response; the caller's 100 Trying is ours alone.
        assert_eq!(
            (count("INVITE"), count("ACK"), count("BYE")),
            (2, 2, 2),
            "{call_id}: {seen:?}"
        );
        assert!(count("200") >= 4, "{call_id}: {seen:?}");
        assert!(count("180") >= 2, "{call_id}: {seen:?}");
    }
    replay_the_capture(&pcap, messages.len())?;
    let m = bed.metrics()?;
    let sent = metric_sum(&m, "sip_fastpath_capture_messages_total{result=\"sent\"");
    assert!(
        sent as usize >= messages.len(),
        "{sent} sent, {} decoded",
        messages.len()
    );
    eprintln!(
        "{calls} calls: {} messages captured, decoded by tshark from sngrep's pcap",
        messages.len()
    );
    Ok(())
}

/// The collector's pcap, and the same as pcapng, replayed through the parser (`parse --pcap`)
/// and the XDP program (`classify --pcap`): every message parses, and the fast path lets every
/// one through to the workers.
fn replay_the_capture(pcap: &std::path::Path, messages: usize) -> anyhow::Result<()> {
    let ng = pcap.with_extension("pcapng");
    tests::run(&[
        "tshark",
        "-r",
        path(pcap)?,
        "-F",
        "pcapng",
        "-w",
        path(&ng)?,
    ])?;
    let lines = |args: &[&str]| -> anyhow::Result<Vec<serde_json::Value>> {
        let out = std::process::Command::new(tests::binary())
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    };
    let parsed = lines(&["parse", "--pcap", path(pcap)?]);
    let parsed_ng = lines(&["parse", "--pcap", path(&ng)?]);
    let classified = lines(&["classify", "--pcap", path(&ng)?]);
    let _ = std::fs::remove_file(&ng);
    let (parsed, parsed_ng, classified) = (parsed?, parsed_ng?, classified?);
    // sngrep writes each decoded message as two identical frames.
    assert_eq!(parsed.len(), 2 * messages, "{parsed:?}");
    assert_eq!(parsed_ng, parsed, "pcap and pcapng read alike");
    assert!(parsed.iter().all(|l| l["ok"] == true), "{parsed:?}");
    assert_eq!(classified.len(), parsed.len());
    for line in &classified {
        assert!(
            ["pass", "redirect"].contains(&line["verdict"].as_str().unwrap_or("")),
            "{line}"
        );
    }
    eprintln!(
        "{} frames replayed through parse and classify",
        parsed.len()
    );
    Ok(())
}

fn path(p: &std::path::Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", p.display()))
}

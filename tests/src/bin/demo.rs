//! `cargo xtask demo`: sip-fastpath on a veth in a network namespace, fed a mix of calls,
//! junk, a scanner and a blocklisted source, then its counters. Cleans up after itself.

use std::{net::SocketAddr, time::Duration};

use tests::{Daemon, EDGE_ADDR, EDGE_IFACE, Topology, require_root, sip_message, workers_sum};

const CONFIG: &str = r#"
sip_ports = [5060]
[filter]
rate_limit_pps = 200
rate_limit_burst = 400
blocklist = ["192.0.2.64/27"]
"#;

fn main() -> anyhow::Result<()> {
    require_root();
    let edge: SocketAddr = format!("{EDGE_ADDR}:5060").parse()?;
    println!(
        "creating namespaces sfp-demo-* with a veth pair; attaching sip-fastpath to {EDGE_IFACE}"
    );
    let topo = Topology::new("demo", &["192.0.2.66"])?;
    let daemon = Daemon::start(&topo.edge, EDGE_IFACE, "auto", CONFIG, "demo")?;
    let phone = topo.client.udp_socket("192.0.2.2:5060".parse()?)?;
    let attacker = topo.client.udp_socket("192.0.2.66:5060".parse()?)?;
    let mut sent = 0u64;
    for call in 0..50 {
        let cid = format!("demo-call-{call}@192.0.2.2");
        for (seq, method) in [(1, "INVITE"), (1, "ACK"), (2, "BYE")] {
            phone.send_to(&sip_message(method, &cid, seq), edge)?;
            sent += 1;
        }
    }
    println!("sent 150 in-dialog messages (50 calls: INVITE, ACK, BYE) from 192.0.2.2");
    for i in 0..20 {
        let scan = format!(
            "OPTIONS sip:100@{EDGE_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKs{i}\r\n\
             From: <sip:100@x>;tag=1\r\nTo: <sip:100@x>\r\nCall-ID: scan{i}\r\nCSeq: 1 OPTIONS\r\n\
             User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
        );
        phone.send_to(scan.as_bytes(), edge)?;
        phone.send_to(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03junk", edge)?;
        attacker.send_to(&sip_message("REGISTER", &format!("reg{i}"), 1), edge)?;
    }
    println!(
        "sent 20 scanner OPTIONS, 20 TLS-looking junk packets, 20 REGISTERs from blocklisted 192.0.2.66"
    );
    daemon.wait_for("the demo traffic", Duration::from_secs(10), |s| {
        workers_sum(s, "received") >= sent
    })?;
    let out = std::process::Command::new(tests::binary())
        .args(["stats", "--iface", EDGE_IFACE, "--pin-root"])
        .arg(&daemon.pin_root)
        .output()?;
    println!(
        "\n$ sip-fastpath stats --iface {EDGE_IFACE}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = daemon.stop()?;
    println!("sip-fastpath stopped ({status}); removing the namespaces");
    Ok(())
}

//! The systemd unit (`deploy/systemd/sip-fastpath@.service`): systemd accepts it, and the
//! capabilities it grants are what the daemon needs — enough to attach XDP and serve as an
//! unprivileged user, and none of them spare. (This machine's PID 1 is not systemd, so the unit
//! is checked with `systemd-analyze verify` and its privileges are reproduced with capsh.)

use std::{path::PathBuf, process::Command};

use tests::{Daemon, EDGE_ADDR, EDGE_IFACE, lan::Lan, require_root};

fn unit() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/systemd/sip-fastpath@.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's `key=` values (the last one wins, as in systemd).
fn setting(unit: &str, key: &str) -> String {
    unit.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_string()
}

#[test]
fn systemd_accepts_the_unit_without_a_warning() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("sfp-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // An instance for an interface, with the binary this build made.
    let text = unit().replace(
        "/usr/local/bin/sip-fastpath",
        &tests::binary().canonicalize()?.display().to_string(),
    );
    let path = dir.join("sip-fastpath@eth0.service");
    std::fs::write(&path, text)?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // It reports unknown keys and bad values as warnings, still exiting 0.
    assert!(said.trim().is_empty(), "{said}");
    Ok(())
}

#[test]
fn the_units_capabilities_are_enough_and_each_is_needed() -> anyhow::Result<()> {
    require_root();
    let unit = unit();
    let granted = setting(&unit, "AmbientCapabilities");
    let caps: Vec<&str> = granted.split_whitespace().collect();
    assert_eq!(
        setting(&unit, "CapabilityBoundingSet"),
        granted,
        "the bounding set is the granted set"
    );
    let lan = Lan::new("caps", &[("edge", EDGE_ADDR), ("client", "192.0.2.2")])?;
    let edge = &lan.host("edge").ns;
    let config = "sip_ports = [5060]\nworkers = 1\n";
    // With exactly the unit's capabilities, as nobody: attached, serving, detached on stop.
    let daemon = Daemon::start_with_caps(edge, EDGE_IFACE, config, "caps", &caps)?;
    let stats = daemon.stats()?;
    assert_eq!(
        stats["workers"].as_array().map(Vec::len),
        Some(1),
        "{stats}"
    );
    let uid = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid().unwrap_or(0)))
        .unwrap_or_default();
    let attached = edge.exec(&["ip", "link", "show", EDGE_IFACE])?;
    assert!(attached.contains("xdp"), "{attached}");
    let status = daemon.stop()?;
    assert!(status.success(), "{status}");
    let after = edge.exec(&["ip", "link", "show", EDGE_IFACE])?;
    assert!(
        !after.contains("xdp"),
        "still attached after the stop: {after}"
    );
    // It really ran unprivileged (nsenter, capsh and the shell each exec the next: the child's
    // pid is the daemon's).
    let uid_line = uid.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    assert!(
        uid_line.split_whitespace().nth(1) == Some("65534"),
        "not running as nobody: {uid_line}"
    );
    // Killed outright (no chance to detach), the program goes with the process: it is attached
    // through a BPF link, which the kernel drops with the last file descriptor.
    let daemon = Daemon::start_with_caps(edge, EDGE_IFACE, config, "caps-kill", &caps)?;
    let pid = daemon.pid().expect("running") as i32;
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut link = edge.exec(&["ip", "link", "show", EDGE_IFACE])?;
    while link.contains("xdp") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        link = edge.exec(&["ip", "link", "show", EDGE_IFACE])?;
    }
    assert!(
        !link.contains("xdp"),
        "still attached after SIGKILL: {link}"
    );
    drop(daemon);
    // Without any one of them, it cannot start.
    for missing in &caps {
        let fewer: Vec<&str> = caps.iter().copied().filter(|c| c != missing).collect();
        let started = Daemon::start_with_caps(edge, EDGE_IFACE, config, "caps-fewer", &fewer);
        assert!(
            started.is_err(),
            "started without {missing}: the unit grants more than it needs"
        );
    }
    Ok(())
}

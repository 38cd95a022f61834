//! The test harness keeps its promises: what it starts, it stops, with every child.

use std::time::{Duration, Instant};

use tests::{
    Netns, kamailio, kamailio::Kamailio, perf::namespace_pids, require_root, sipp::LogDir,
};

/// Kamailio forks workers that outlive a killed parent: stopping it must stop its whole process
/// group (bench-e2e once left 8 of them running).
#[test]
fn stopping_kamailio_leaves_no_process_behind() -> anyhow::Result<()> {
    require_root();
    let ns = Netns::new("harness-kam")?;
    ns.exec(&["ip", "addr", "add", "192.0.2.9/32", "dev", "lo"])?;
    ns.exec(&["ip", "link", "set", "lo", "up"])?;
    let logs = LogDir::new("harness")?;
    let list = logs.0.join("dispatcher.list");
    std::fs::write(&list, "1 sip:192.0.2.9:5070\n")?;
    let list_value = format!("{}\"", list.display());
    let cfg = kamailio::config(
        "dispatcher.cfg",
        &[("LISTEN", "192.0.2.9"), ("LIST\"", &list_value)],
    )?;
    let mut k = Kamailio::start(&ns, &cfg, &logs.0, "harness")?;
    let running = namespace_pids(&ns)?.len();
    // The main process, its UDP children and its timer and helper processes.
    assert!(running > 4, "only {running} Kamailio processes");
    k.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !namespace_pids(&ns)?.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(namespace_pids(&ns)?, Vec::<u32>::new(), "left running");
    Ok(())
}

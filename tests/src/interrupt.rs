//! Ctrl-C and `kill` for the long programs (bench-e2e, bench-memory, the demo): they own
//! namespaces, Kamailio process groups and pinned maps that their guards remove on drop, which a
//! signal's default action would skip. [`install`] turns the first SIGINT or SIGTERM into a flag
//! that [`check`] reports as an error between steps, so the program returns through its guards;
//! a second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Starts watching for SIGINT and SIGTERM.
pub fn install() -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("signal {signal} again: exiting without cleaning up");
                std::process::exit(130);
            }
            eprintln!(
                "signal {signal}: stopping after the current step and cleaning up \
                 (again to exit at once)"
            );
        }
    });
    Ok(())
}

/// An error once a signal came: the caller returns it and its guards clean up.
pub fn check() -> anyhow::Result<()> {
    anyhow::ensure!(
        !INTERRUPTED.load(Ordering::SeqCst),
        "interrupted by a signal"
    );
    Ok(())
}

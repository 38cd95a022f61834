//! A test's own TCP client against the edge: read until a text arrives, or see the edge close.

use std::{
    io::Read,
    net::TcpStream,
    time::{Duration, Instant},
};

/// Reads from `s` until `want` is in what arrived or `limit` passes; everything read.
pub fn read_until(s: &mut TcpStream, want: &str, limit: Duration) -> String {
    let until = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until && !String::from_utf8_lossy(&got).contains(want) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True once the edge closed `s` (a read returns end of stream or a reset) within `limit`.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut buf = [0u8; 256];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

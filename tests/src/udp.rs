//! Single SIP requests from a test's own UDP socket, for what sipp cannot check: the exact
//! answer to a forged request, and that nothing at all reached a host.

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

/// Sends `msg` to `to` and returns every datagram that comes back within `wait`.
pub fn exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    msg: &[u8],
    wait: Duration,
) -> anyhow::Result<Vec<Vec<u8>>> {
    socket.send_to(msg, to)?;
    Ok(collect(socket, wait))
}

/// Every datagram `socket` receives within `wait` (its read timeout must be shorter).
pub fn collect(socket: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_535];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

/// The final responses among `datagrams` (responses with a status of 200 or more), as text.
fn finals(datagrams: &[Vec<u8>]) -> impl Iterator<Item = String> + '_ {
    datagrams
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .filter(|t| status(t).is_some_and(|s| s >= 200))
}

/// The first final response among `datagrams`.
pub fn final_response(datagrams: &[Vec<u8>]) -> Option<String> {
    finals(datagrams).next()
}

/// The final response among `datagrams` to the request with this Call-ID. Where a test sends
/// INVITEs it does not acknowledge, their final responses come again (Timer G, RFC 3261
/// §17.2.1, from 500 ms on) and may arrive while the test waits for another request's answer.
pub fn final_response_to(datagrams: &[Vec<u8>], call_id: &str) -> Option<String> {
    finals(datagrams).find(|t| header_values(t, "Call-ID").contains(&call_id))
}

/// The status code of a response's text.
pub fn status(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The values of header `name` in a message's text (case-insensitive name, no compact forms).
pub fn header_values<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

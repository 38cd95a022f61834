//! Reading a request's route (RFC 3261 §16.4): which Route entries are ours and come off, what
//! they carry, and what the next hop is. Pure: no configuration beyond who we are and the flow
//! key, no allocation.
//!
//! Our entries are the URIs we put in Record-Route and Path: `<sip:[token@]host:port;lr>`, where
//! `host:port` is our route address ([`Identity::is_me`]). A request may carry several of them
//! in a row: we add two Record-Route entries when the two sides of a dialog differ (RFC 5658
//! style: one facing each side), and a call between two outside phones passes us twice. All
//! leading entries of ours are removed (loose routing), and the **last** one removed names the
//! side the request leaves on: an entry with a flow token sends it to that flow; a plain one
//! leaves the next hop to the rest of the route (the first Route entry not ours, else the
//! Request-URI).
//!
//! Strict routers (§16.4, RFC 2543 style) put our Record-Route URI into the Request-URI and the
//! real target into the last Route entry. A Request-URI naming us with `lr` is therefore one of
//! our entries: the last Route value becomes the Request-URI again and leaves the Route set.

use super::{
    flow::{Flow, FlowKey, TokenError},
    rewrite::Identity,
};
use crate::sip::{
    Error, HeaderName, Message, StartLine, address::Address, uri::Uri, validate::Validated,
};

/// What an entry of ours carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    /// No token: the next hop comes from the rest of the route.
    Plain,
    /// A valid flow token: the request leaves on this flow.
    Flow(Flow),
}

/// The request's route as §16.4 reads it.
#[derive(Debug, Clone, Copy)]
pub struct RouteSet<'b> {
    /// Route values that are ours, removed from the front.
    pub pop_front: usize,
    /// Strict-router compatibility: this (the last Route value's URI) replaces the
    /// Request-URI, and that value leaves the Route set.
    pub new_uri: Option<&'b [u8]>,
    /// The last entry of ours removed (from the Route set, or a strict router's Request-URI).
    pub own: Option<Own>,
    /// Some entry of ours carried a token that did not verify (tampered, forged, or made with
    /// another secret): the request must be refused (403), whatever else it says.
    pub bad_token: Option<TokenError>,
    /// Route values left after ours (excluding the one a strict router's fix-up takes).
    pub remaining: usize,
    /// The next hop's URI: the first Route value not ours, else the (effective) Request-URI.
    pub next: Uri<'b>,
    /// `next` came from the Route set, not the Request-URI.
    pub next_is_route: bool,
}

impl RouteSet<'_> {
    /// A request that named nothing of ours.
    pub fn popped_nothing(&self) -> bool {
        self.own.is_none() && self.bad_token.is_none()
    }
}

/// What one of our URIs says: its user part is a flow token, or there is none.
fn own_entry(uri: &Uri<'_>, key: &FlowKey) -> Result<Own, TokenError> {
    match uri.user {
        None => Ok(Own::Plain),
        Some(token) => key.decode(token).map(Own::Flow),
    }
}

/// Reads `msg`'s route, with the Request-URI and the first Route value as validation parsed
/// them (`read`). Fails if the Request-URI or a Route value does not parse (a request that
/// passed validation has neither problem).
pub fn read<'b>(
    msg: &Message<'_, 'b>,
    read: &Validated<'b>,
    me: &Identity,
    key: &FlowKey,
) -> Result<RouteSet<'b>, Error> {
    let StartLine::Request { .. } = msg.start else {
        return Err(Error::StartLine);
    };
    let request_uri = read.request_uri.ok_or(Error::RequestUri)?;
    // Counted unparsed: each value is parsed once, below.
    let total = msg.values(HeaderName::Route).count();
    let mut set = RouteSet {
        pop_front: 0,
        new_uri: None,
        own: None,
        bad_token: None,
        remaining: 0,
        next: request_uri,
        next_is_route: false,
    };
    let note = |set: &mut RouteSet<'b>, r: Result<Own, TokenError>| match r {
        Ok(o) => set.own = Some(o),
        Err(e) => {
            set.bad_token.get_or_insert(e);
        }
    };
    // §16.4: a Request-URI we placed in a Record-Route (ours, with lr) came from a strict
    // router; the real Request-URI is the last Route value.
    let mut usable = total;
    let mut effective_uri = request_uri;
    if is_ours(&request_uri, me) && request_uri.params.get(b"lr").is_some() && total > 0 {
        let last = msg
            .values(HeaderName::Route)
            .nth(total - 1)
            .ok_or(Error::RequestUri)?;
        let last = Address::parse(last).map_err(|_| Error::HeaderValue(HeaderName::Route))?;
        note(&mut set, own_entry(&request_uri, key));
        set.new_uri = Some(last.uri_raw);
        effective_uri = last.uri;
        usable = total - 1;
    }
    let mut next_route = None;
    for (i, uri) in route_uris(msg, read.top_route).take(usable).enumerate() {
        let uri = uri?;
        if next_route.is_none() && i == set.pop_front && is_ours(&uri, me) {
            set.pop_front += 1;
            note(&mut set, own_entry(&uri, key));
        } else if next_route.is_none() {
            next_route = Some(uri);
        }
    }
    set.remaining = usable - set.pop_front;
    match next_route {
        Some(uri) => {
            set.next = uri;
            set.next_is_route = true;
        }
        None => set.next = effective_uri,
    }
    Ok(set)
}

/// The URI of every Route value in order, the first being `first` when validation handed it
/// on.
fn route_uris<'h, 'b>(
    msg: &Message<'h, 'b>,
    first: Option<Uri<'b>>,
) -> impl Iterator<Item = Result<Uri<'b>, Error>> + use<'h, 'b> {
    msg.values(HeaderName::Route)
        .enumerate()
        .map(move |(i, v)| match first {
            Some(uri) if i == 0 => Ok(uri),
            _ => Address::parse(v)
                .map(|a| a.uri)
                .map_err(|_| Error::HeaderValue(HeaderName::Route)),
        })
}

/// A SIP URI naming our route address.
fn is_ours(uri: &Uri<'_>, me: &Identity) -> bool {
    uri.is_sip() && me.is_me(uri.host, uri.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        proxy::flow::Transport,
        sip::{Header, Parsed, parse},
    };

    const ME: &str = "192.0.2.1";

    fn key() -> FlowKey {
        FlowKey::new(b"route tests secret 123")
    }

    fn flow(peer: &str) -> Flow {
        Flow {
            transport: Transport::Udp,
            peer: peer.parse().unwrap(),
            local_port: 5060,
        }
    }

    fn with_routes<R>(uri: &str, routes: &[&str], f: impl FnOnce(RouteSet<'_>) -> R) -> R {
        let mut text =
            format!("BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx\r\n");
        for r in routes {
            text.push_str(&format!("Route: {r}\r\n"));
        }
        text.push_str(
            "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
        );
        let mut h = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut h) else {
            panic!("{text}")
        };
        let me = Identity::new(ME, 5060);
        let validated = m.validate().expect("valid");
        f(read(&m, &validated, &me, &key()).unwrap())
    }

    fn token(peer: &str) -> String {
        key().encode(&flow(peer)).as_str().to_string()
    }

    #[test]
    fn no_route_means_the_request_uri() {
        with_routes("sip:bob@192.0.2.30:5070", &[], |r| {
            assert!(r.popped_nothing());
            assert_eq!((r.next.host, r.next.port), (&b"192.0.2.30"[..], Some(5070)));
            assert!(!r.next_is_route);
        });
    }

    #[test]
    fn our_plain_entry_is_popped_and_the_next_route_is_the_hop() {
        with_routes(
            "sip:bob@10.0.0.5",
            &["<sip:192.0.2.1:5060;lr>, <sip:kam.example:5080;lr>"],
            |r| {
                assert_eq!(r.pop_front, 1);
                assert_eq!(r.own, Some(Own::Plain));
                assert_eq!(r.remaining, 1);
                assert!(r.next_is_route);
                assert_eq!(r.next.host, b"kam.example");
                assert_eq!(r.next.port, Some(5080));
            },
        );
    }

    #[test]
    fn the_last_of_several_entries_of_ours_decides() {
        // Two entries per pass (one per side), two passes: all four are ours; the last one,
        // with phone B's token, names where the request goes.
        let (a, b) = (token("203.0.113.5:40000"), token("198.51.100.7:5060"));
        let routes = [
            format!("<sip:{a}@{ME};lr>"),
            format!("<sip:{ME};lr>"),
            format!("<sip:{ME}:5060;lr>, <sip:{b}@{ME};lr>"),
        ];
        let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
        with_routes("sip:bob@10.0.0.5", &routes, |r| {
            assert_eq!(r.pop_front, 4);
            assert_eq!(r.own, Some(Own::Flow(flow("198.51.100.7:5060"))));
            assert_eq!(r.remaining, 0);
            assert_eq!(
                r.next.host, b"10.0.0.5",
                "the Request-URI, though the flow wins"
            );
        });
        // The other direction: the plain entry is last, so the route goes on inward.
        let routes = [format!(
            "<sip:{a}@{ME};lr>, <sip:{ME};lr>, <sip:192.0.2.11;lr>"
        )];
        let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
        with_routes("sip:bob@10.0.0.5", &routes, |r| {
            assert_eq!((r.pop_front, r.own), (2, Some(Own::Plain)));
            assert_eq!(r.next.host, b"192.0.2.11");
        });
    }

    #[test]
    fn a_forged_or_tampered_token_is_reported() {
        let good = token("203.0.113.5:40000");
        let mut tampered = good.clone().into_bytes();
        tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [tampered.as_str(), "alice", "AAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            let route = format!("<sip:{bad}@{ME};lr>");
            with_routes("sip:bob@10.0.0.5", &[&route], |r| {
                assert!(r.bad_token.is_some(), "{bad}");
                assert!(!r.popped_nothing());
            });
        }
    }

    #[test]
    fn entries_of_ours_after_a_foreign_one_are_not_popped() {
        with_routes(
            "sip:bob@10.0.0.5",
            &["<sip:192.0.2.50;lr>", "<sip:192.0.2.1;lr>"],
            |r| {
                assert_eq!(r.pop_front, 0);
                assert!(r.popped_nothing());
                assert_eq!(r.next.host, b"192.0.2.50");
                assert_eq!(r.remaining, 2);
            },
        );
    }

    #[test]
    fn another_port_on_our_address_is_not_us() {
        with_routes("sip:bob@10.0.0.5", &["<sip:192.0.2.1:5070;lr>"], |r| {
            assert!(r.popped_nothing());
            assert_eq!(r.next.port, Some(5070));
        });
    }

    #[test]
    fn strict_router_compatibility() {
        // A strict router before us put our Record-Route URI in the Request-URI and the real
        // target at the end of the Route set (RFC 3261 §16.4).
        let t = token("203.0.113.5:40000");
        let uri = format!("sip:{t}@{ME};lr");
        with_routes(
            &uri,
            &["<sip:192.0.2.60;lr>", "<sip:alice@10.1.1.1:5062>"],
            |r| {
                assert_eq!(r.new_uri, Some(&b"sip:alice@10.1.1.1:5062"[..]));
                assert_eq!(r.own, Some(Own::Flow(flow("203.0.113.5:40000"))));
                assert_eq!(r.next.host, b"192.0.2.60", "the remaining route first");
                assert_eq!(r.remaining, 1);
            },
        );
        with_routes(&uri, &["<sip:alice@10.1.1.1:5062>"], |r| {
            assert_eq!(r.remaining, 0);
            assert_eq!((r.next.host, r.next.port), (&b"10.1.1.1"[..], Some(5062)));
        });
        // Our address without lr is a request addressed to us, not strict routing.
        with_routes("sip:bob@192.0.2.1", &["<sip:192.0.2.60;lr>"], |r| {
            assert!(r.new_uri.is_none());
            assert_eq!(r.next.host, b"192.0.2.60");
        });
    }
}

//! Where a request goes (RFC 3261 §16.5, §16.6 step 6), given its route ([`super::route`]) and
//! the side it came from. Pure: the proxy acts on the [`Target`].
//!
//! The edge stands between the **outside** (phones, trunks, the internet) and the **inside**
//! (the backends, and sources in `trusted`). The rules, in order:
//!
//! - A token of ours that does not verify: 403, from either side.
//! - The last entry of ours carries a flow token: the request leaves on that flow.
//! - From outside, initial (no To tag): the backend pool (by Call-ID hash; a REGISTER by its
//!   address-of-record), whatever the Request-URI, unless a Route beyond ours remains (the edge
//!   is not an open relay: 403) or `domains` is set and does not list the Request-URI's host (403).
//! - From outside, in a dialog: the next hop of the route, an address that must be inside (403
//!   otherwise). A host name is not looked up for the outside: such a request, like one naming
//!   only us, is routed by the dialog table.
//! - From inside: the next hop of the route; with no Route left, a static route for the
//!   Request-URI (domain, then longest user prefix), else the Request-URI's host: an address as
//!   is, a name by RFC 3263. A Request-URI naming us with no static route: 404 (OPTIONS to us:
//!   answered here).

use std::net::{IpAddr, SocketAddr};

use sip_common::{fmix64, hash_call_id};

use super::{
    flow::{Flow, Transport},
    rewrite::Identity,
    route::{Own, RouteSet},
};
use crate::{
    control::cidr::Cidr,
    sip::{
        Message, Method,
        uri::{Scheme, Uri, ip_literal},
    },
};

/// Which side a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Outside,
    Inside,
}

/// How a request's destination was found, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutedBy {
    /// The backend pool.
    Pool,
    /// An address in the Route set or Request-URI.
    Route,
    /// A flow token of ours.
    Flow,
    /// A name in the Route set or Request-URI, resolved per RFC 3263.
    Dns,
    /// A `[[routes]]` entry.
    Static,
    /// The dialog table (a request naming only us).
    Dialog,
}

impl RoutedBy {
    pub const ALL: [RoutedBy; sip_common::ROUTED_KINDS] = [
        RoutedBy::Pool,
        RoutedBy::Route,
        RoutedBy::Flow,
        RoutedBy::Dns,
        RoutedBy::Static,
        RoutedBy::Dialog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RoutedBy::Pool => "pool",
            RoutedBy::Route => "route",
            RoutedBy::Flow => "flow",
            RoutedBy::Dns => "dns",
            RoutedBy::Static => "static",
            RoutedBy::Dialog => "dialog",
        }
    }
}

/// Why a request was refused, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A token of ours did not verify.
    BadToken,
    /// An outside request routed somewhere other than the pool, a flow or the inside.
    Relay,
    /// An outside request for a domain not in `domains`.
    Domain,
    /// Nothing to route an inside request by.
    NoRoute,
    /// The next hop's domain does not exist (DNS).
    UnknownDomain,
}

impl Refusal {
    pub const ALL: [Refusal; sip_common::REFUSAL_KINDS] = [
        Refusal::BadToken,
        Refusal::Relay,
        Refusal::Domain,
        Refusal::NoRoute,
        Refusal::UnknownDomain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Refusal::BadToken => "bad_flow_token",
            Refusal::Relay => "relay_denied",
            Refusal::Domain => "domain_not_served",
            Refusal::NoRoute => "no_route",
            Refusal::UnknownDomain => "unknown_domain",
        }
    }

    /// The response: status and reason phrase.
    pub fn response(self) -> (u16, &'static str) {
        match self {
            Refusal::BadToken => (403, "Forbidden (invalid flow token)"),
            Refusal::Relay => (403, "Forbidden (not a relay)"),
            Refusal::Domain => (403, "Forbidden (domain not served here)"),
            Refusal::NoRoute => (404, "Not Found (no route)"),
            Refusal::UnknownDomain => (404, "Not Found (domain does not resolve)"),
        }
    }
}

/// A host name to resolve, with the port if the URI gave one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name {
    /// Lower case, no trailing dot.
    pub host: String,
    pub port: Option<u16>,
}

impl Name {
    fn new(host: &[u8], port: Option<u16>) -> Self {
        let host = String::from_utf8_lossy(host).to_ascii_lowercase();
        Name {
            host: host.trim_end_matches('.').to_string(),
            port,
        }
    }
}

/// Where a `[[routes]]` entry sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Addr(SocketAddr),
    Name(Name),
}

impl std::str::FromStr for Destination {
    type Err = String;

    /// `ip`, `ip:port`, `[v6]:port`, `host` or `host:port`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Destination::Addr(a));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Destination::Addr(SocketAddr::new(ip, 5060)));
        }
        let (host, port) = crate::sip::uri::split_hostport(s.as_bytes())
            .ok_or_else(|| format!("`{s}` is not ip, ip:port, host or host:port"))?;
        if host.starts_with(b"[") {
            return Err(format!("`{s}` is not ip, ip:port, host or host:port"));
        }
        Ok(Destination::Name(Name::new(host, port)))
    }
}

/// A static route: requests from inside whose Request-URI host is `domain`, or whose user part
/// starts with `prefix`, go to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub domain: Option<String>,
    pub prefix: Option<String>,
    pub destination: Destination,
}

/// The routing policy from the config.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Sources that are inside besides the backends.
    pub trusted: Vec<Cidr>,
    /// When not empty: the only Request-URI hosts outside requests may ask for (lower case).
    pub domains: Vec<String>,
    pub routes: Vec<StaticRoute>,
}

impl Policy {
    /// Inside: a backend's address or a trusted CIDR.
    pub fn is_inside(&self, ip: IpAddr, backends: impl IntoIterator<Item = IpAddr>) -> bool {
        let ip = canonical(ip);
        backends.into_iter().any(|b| canonical(b) == ip)
            || self.trusted.iter().any(|c| c.contains(ip))
    }

    fn serves(&self, host: &[u8]) -> bool {
        let host = host.strip_suffix(b".").unwrap_or(host);
        self.domains
            .iter()
            .any(|d| d.as_bytes().eq_ignore_ascii_case(host))
    }

    /// The static route for a Request-URI: a domain match first, then the longest prefix.
    fn static_route(&self, uri: &Uri<'_>) -> Option<&StaticRoute> {
        let host = uri.host.strip_suffix(b".").unwrap_or(uri.host);
        let user = match uri.scheme {
            Scheme::Tel => uri.host,
            _ => uri.user.unwrap_or(b""),
        };
        self.routes
            .iter()
            .find(|r| {
                r.domain
                    .as_ref()
                    .is_some_and(|d| d.as_bytes().eq_ignore_ascii_case(host))
                    && uri.scheme != Scheme::Tel
            })
            .or_else(|| {
                self.routes
                    .iter()
                    .filter(|r| {
                        r.prefix
                            .as_ref()
                            .is_some_and(|p| user.starts_with(p.as_bytes()))
                    })
                    .max_by_key(|r| r.prefix.as_ref().map_or(0, String::len))
            })
    }
}

/// An IPv4-mapped IPv6 address as IPv4, so both spellings of a source compare equal.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An outside flow named by a token of ours.
    Flow(Flow),
    /// A backend from the pool, chosen by a hash of `key`.
    Pool { key: PoolKey },
    /// An address. `inside_only`: the request came from outside, so the address must be inside.
    Addr {
        addr: SocketAddr,
        /// The URI's `transport` parameter (TLS for `sips:`), UDP without one.
        transport: Transport,
        by: RoutedBy,
        inside_only: bool,
    },
    /// A host name to resolve (RFC 3263), then as [`Target::Addr`].
    Resolve {
        name: Name,
        transport: Transport,
        by: RoutedBy,
        inside_only: bool,
    },
    /// Nothing in the request routes it: the dialog table may.
    Dialog,
    /// An OPTIONS for us: answer it here.
    Local,
    /// Answer with [`Refusal::response`].
    Refuse(Refusal),
}

/// What picks a new request's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKey {
    /// The Call-ID, by the hash the kernel steered the message with (the worker computed it
    /// once; the proxy keeps it for the message it is handling).
    CallId,
    /// A REGISTER's address-of-record, so every binding of one AoR meets one registrar.
    Aor(u64),
}

/// Decides where `msg`, with route `route`, from `side`, goes.
pub fn decide(
    msg: &Message<'_, '_>,
    route: &RouteSet<'_>,
    side: Side,
    policy: &Policy,
    me: &Identity,
) -> Target {
    if route.bad_token.is_some() {
        return Target::Refuse(Refusal::BadToken);
    }
    if let Some(Own::Flow(flow)) = route.own {
        return Target::Flow(flow);
    }
    let in_dialog = msg.tag_in(crate::sip::HeaderName::To).flatten().is_some();
    let next = &route.next;
    let names_us = next.is_sip() && me.is_me(next.host, next.port);
    match side {
        Side::Outside if !in_dialog => {
            if route.remaining > 0 {
                return Target::Refuse(Refusal::Relay);
            }
            if !policy.domains.is_empty() && !names_us && !policy.serves(next.host) {
                return Target::Refuse(Refusal::Domain);
            }
            let key = if msg.method() == Some(Method::Register) {
                PoolKey::Aor(aor_hash(msg))
            } else {
                PoolKey::CallId
            };
            Target::Pool { key }
        }
        Side::Outside => {
            // A host name is not looked up for the outside (anyone could make us query any
            // name); such a dialog, like one naming only us, is routed by the dialog table.
            match hop(next, true) {
                t @ Target::Addr { .. } if !names_us && next.is_sip() => t,
                _ => Target::Dialog,
            }
        }
        Side::Inside => {
            if route.remaining == 0 {
                if let Some(r) = policy.static_route(next) {
                    return match &r.destination {
                        Destination::Addr(addr) => Target::Addr {
                            addr: *addr,
                            transport: Transport::Udp,
                            by: RoutedBy::Static,
                            inside_only: false,
                        },
                        Destination::Name(name) => Target::Resolve {
                            name: name.clone(),
                            transport: Transport::Udp,
                            by: RoutedBy::Static,
                            inside_only: false,
                        },
                    };
                }
                if names_us || !next.is_sip() {
                    return if in_dialog {
                        Target::Dialog
                    } else if msg.method() == Some(Method::Options) && names_us {
                        Target::Local
                    } else {
                        Target::Refuse(Refusal::NoRoute)
                    };
                }
            }
            hop(next, false)
        }
    }
}

/// The next hop named by a SIP URI: its address, or its name to resolve.
fn hop(uri: &Uri<'_>, inside_only: bool) -> Target {
    let literal = ip_literal(uri.host);
    // RFC 3261 §19.1.2, RFC 3263 §4.1: the transport parameter, or TLS for a SIPS URI.
    let transport = match (uri.scheme, uri.params.get(b"transport").flatten()) {
        (Scheme::Sips, _) => Transport::Tls,
        (_, Some(t)) => Transport::ALL
            .into_iter()
            .find(|x| t.eq_ignore_ascii_case(x.name().as_bytes()))
            .unwrap_or(Transport::Udp),
        _ => Transport::Udp,
    };
    let port = uri.port.unwrap_or(match transport {
        Transport::Tls => 5061,
        _ => 5060,
    });
    match literal {
        Some(ip) => Target::Addr {
            addr: SocketAddr::new(ip, port),
            transport,
            by: RoutedBy::Route,
            inside_only,
        },
        None => Target::Resolve {
            name: Name::new(uri.host, uri.port),
            transport,
            by: RoutedBy::Dns,
            inside_only,
        },
    }
}

/// The hash of a REGISTER's address-of-record (RFC 3261 §10.2: the To URI): user part as
/// written, host in lower case, scheme, port and parameters left out, so every registration of
/// one user picks the same registrar whatever its Call-ID.
pub fn aor_hash(msg: &Message<'_, '_>) -> u64 {
    let Some(Ok(to)) = msg.to() else {
        return super::call_id_hash(msg);
    };
    let mut host = [0u8; 256];
    let n = to.uri.host.len().min(host.len());
    host[..n].copy_from_slice(&to.uri.host[..n]);
    host[..n].make_ascii_lowercase();
    fmix64(hash_call_id(to.uri.user.unwrap_or(b"")) ^ fmix64(hash_call_id(&host[..n])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        proxy::{
            flow::{FlowKey, Transport},
            route,
        },
        sip::{Header, Parsed, parse},
    };

    const ME: &str = "192.0.2.1";

    fn policy() -> Policy {
        Policy {
            trusted: vec!["10.9.0.0/16".parse().unwrap()],
            domains: Vec::new(),
            routes: vec![
                StaticRoute {
                    domain: Some("carrier.example".into()),
                    prefix: None,
                    destination: "192.0.2.70:5080".parse().unwrap(),
                },
                StaticRoute {
                    domain: None,
                    prefix: Some("+44".into()),
                    destination: "uk.trunk.example".parse().unwrap(),
                },
                StaticRoute {
                    domain: None,
                    prefix: Some("+4420".into()),
                    destination: "192.0.2.71".parse().unwrap(),
                },
            ],
        }
    }

    fn decide_for(text: &str, side: Side, policy: &Policy) -> Target {
        let mut h = [Header::EMPTY; 32];
        let Ok(Parsed::Message(m)) = parse(text.as_bytes(), &mut h) else {
            panic!("{text}")
        };
        let me = Identity::new(ME, 5060);
        let key = FlowKey::new(b"target tests secret");
        let validated = m.validate().expect("valid");
        let r = route::read(&m, &validated, &me, &key).unwrap();
        decide(&m, &r, side, policy, &me)
    }

    fn request(method: &str, uri: &str, to_tag: bool, routes: &[&str]) -> String {
        let mut t =
            format!("{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKq\r\n");
        for r in routes {
            t.push_str(&format!("Route: {r}\r\n"));
        }
        let tag = if to_tag { ";tag=t2" } else { "" };
        t.push_str(&format!(
            "From: <sip:alice@example.com>;tag=t1\r\nTo: <sip:bob@Example.COM>{tag}\r\n\
             Call-ID: c1\r\nCSeq: 1 {method}\r\n\r\n"
        ));
        t
    }

    #[test]
    fn outside_initial_goes_to_the_pool_whatever_the_uri() {
        for uri in [
            "sip:bob@example.com",
            "sip:bob@192.0.2.1",
            "sip:bob@198.51.100.99",
        ] {
            let t = decide_for(
                &request("INVITE", uri, false, &[]),
                Side::Outside,
                &policy(),
            );
            assert!(
                matches!(
                    t,
                    Target::Pool {
                        key: PoolKey::CallId
                    }
                ),
                "{uri}: {t:?}"
            );
        }
        let t = decide_for(
            &request(
                "INVITE",
                "sip:bob@example.com",
                false,
                &["<sip:192.0.2.1;lr>"],
            ),
            Side::Outside,
            &policy(),
        );
        assert!(
            matches!(t, Target::Pool { .. }),
            "a preloaded route to us: {t:?}"
        );
    }

    #[test]
    fn outside_never_relays_elsewhere() {
        let t = decide_for(
            &request(
                "INVITE",
                "sip:bob@example.com",
                false,
                &["<sip:198.51.100.99;lr>"],
            ),
            Side::Outside,
            &policy(),
        );
        assert_eq!(t, Target::Refuse(Refusal::Relay));
        let t = decide_for(
            &request(
                "INVITE",
                "sip:bob@example.com",
                false,
                &["<sip:192.0.2.1;lr>", "<sip:evil.example;lr>"],
            ),
            Side::Outside,
            &policy(),
        );
        assert_eq!(t, Target::Refuse(Refusal::Relay));
        // In a dialog: the next hop must be inside.
        let t = decide_for(
            &request(
                "BYE",
                "sip:victim@198.51.100.99",
                true,
                &["<sip:192.0.2.1;lr>"],
            ),
            Side::Outside,
            &policy(),
        );
        assert!(
            matches!(
                t,
                Target::Addr {
                    inside_only: true,
                    ..
                }
            ),
            "{t:?}"
        );
        let t = decide_for(
            &request("BYE", "sip:victim@victim.example", true, &[]),
            Side::Outside,
            &policy(),
        );
        assert_eq!(t, Target::Dialog, "no lookups for the outside");
        let forged = "<sip:AAAAAAAAAAAAAAAAAAAAAAAAAA@192.0.2.1;lr>";
        let t = decide_for(
            &request("INVITE", "sip:bob@example.com", false, &[forged]),
            Side::Outside,
            &policy(),
        );
        assert_eq!(t, Target::Refuse(Refusal::BadToken));
    }

    #[test]
    fn domains_limit_outside_initial_requests() {
        let mut p = policy();
        p.domains = vec!["example.com".into()];
        let ok = decide_for(
            &request("INVITE", "sip:bob@EXAMPLE.com", false, &[]),
            Side::Outside,
            &p,
        );
        assert!(matches!(ok, Target::Pool { .. }));
        let us = decide_for(
            &request("INVITE", "sip:bob@192.0.2.1", false, &[]),
            Side::Outside,
            &p,
        );
        assert!(
            matches!(us, Target::Pool { .. }),
            "our own address is always served"
        );
        let other = decide_for(
            &request("INVITE", "sip:bob@other.example", false, &[]),
            Side::Outside,
            &p,
        );
        assert_eq!(other, Target::Refuse(Refusal::Domain));
        let inside = decide_for(
            &request("INVITE", "sip:bob@other.example", false, &[]),
            Side::Inside,
            &p,
        );
        assert!(
            matches!(inside, Target::Resolve { .. }),
            "domains limit the outside only"
        );
    }

    #[test]
    fn a_flow_token_routes_from_either_side() {
        let key = FlowKey::new(b"target tests secret");
        let flow = Flow {
            transport: Transport::Udp,
            peer: "203.0.113.50:41000".parse().unwrap(),
            local_port: 5060,
        };
        let route = format!("<sip:{}@{ME};lr>", key.encode(&flow).as_str());
        for side in [Side::Inside, Side::Outside] {
            let t = decide_for(
                &request("INVITE", "sip:bob@10.0.0.7", false, &[&route]),
                side,
                &policy(),
            );
            assert_eq!(t, Target::Flow(flow));
        }
    }

    #[test]
    fn inside_routes_by_route_static_routes_then_the_uri() {
        let p = policy();
        let d = |uri: &str, routes: &[&str]| {
            decide_for(&request("INVITE", uri, false, routes), Side::Inside, &p)
        };
        assert!(matches!(
            d("sip:x@carrier.example", &[]),
            Target::Addr {
                by: RoutedBy::Static,
                ..
            }
        ));
        assert_eq!(
            d("sip:+442071234567@192.0.2.1", &[]),
            Target::Addr {
                addr: "192.0.2.71:5060".parse().unwrap(),
                transport: Transport::Udp,
                by: RoutedBy::Static,
                inside_only: false
            },
            "the longest prefix wins"
        );
        assert!(matches!(
            d("tel:+44161123456", &[]),
            Target::Resolve {
                by: RoutedBy::Static,
                ..
            }
        ));
        assert_eq!(
            d(
                "sip:x@carrier.example",
                &["<sip:192.0.2.1;lr>", "<sip:192.0.2.80:5062;lr>"]
            ),
            Target::Addr {
                addr: "192.0.2.80:5062".parse().unwrap(),
                transport: Transport::Udp,
                by: RoutedBy::Route,
                inside_only: false
            },
            "an explicit Route beats the static table"
        );
        assert_eq!(
            d("sip:x@Trunk.Example.", &[]),
            Target::Resolve {
                name: Name {
                    host: "trunk.example".into(),
                    port: None
                },
                transport: Transport::Udp,
                by: RoutedBy::Dns,
                inside_only: false
            }
        );
        assert_eq!(
            d("sip:+15551234@192.0.2.1", &[]),
            Target::Refuse(Refusal::NoRoute)
        );
        // RFC 3263 §4.1: the transport parameter, and TLS on 5061 for a SIPS URI.
        assert_eq!(
            d(
                "sip:x@carrier.example",
                &["<sip:192.0.2.80;transport=TCP;lr>"]
            ),
            Target::Addr {
                addr: "192.0.2.80:5060".parse().unwrap(),
                transport: Transport::Tcp,
                by: RoutedBy::Route,
                inside_only: false
            }
        );
        assert_eq!(
            d("sips:x@192.0.2.81", &[]),
            Target::Addr {
                addr: "192.0.2.81:5061".parse().unwrap(),
                transport: Transport::Tls,
                by: RoutedBy::Route,
                inside_only: false
            }
        );
        assert_eq!(
            decide_for(
                &request("OPTIONS", "sip:192.0.2.1", false, &[]),
                Side::Inside,
                &p
            ),
            Target::Local
        );
    }

    #[test]
    fn inside_sources() {
        let p = policy();
        let backends = ["192.0.2.11".parse().unwrap()];
        assert!(p.is_inside("192.0.2.11".parse().unwrap(), backends));
        assert!(p.is_inside("::ffff:192.0.2.11".parse().unwrap(), backends));
        assert!(p.is_inside("10.9.3.4".parse().unwrap(), backends));
        assert!(!p.is_inside("192.0.2.12".parse().unwrap(), backends));
    }

    #[test]
    fn registrations_of_one_user_hash_alike_whatever_the_call_id() {
        let reg = |call_id: &str, to: &str| {
            let text = format!(
                "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKq\r\n\
                 From: <sip:alice@example.com>;tag=t1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n\r\n"
            );
            match decide_for(&text, Side::Outside, &policy()) {
                Target::Pool {
                    key: PoolKey::Aor(hash),
                } => hash,
                t => panic!("{t:?}"),
            }
        };
        let a = reg("one", "<sip:alice@example.com>");
        assert_eq!(
            a,
            reg(
                "two",
                "\"Alice\" <sip:alice@EXAMPLE.com:5060;transport=udp>"
            )
        );
        assert_eq!(a, reg("three", "sips:alice@example.com"));
        assert_ne!(a, reg("one", "<sip:bob@example.com>"));
    }
}

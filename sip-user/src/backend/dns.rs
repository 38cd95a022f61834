//! SRV lookups for `srv` backends, with hickory's stub resolver: the configured name servers or
//! /etc/resolv.conf, UDP with TCP for truncated answers, its own cache. Turns an answer into
//! [`Member`]s through [`super::srv`].

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::RData,
};

use super::{
    Member,
    srv::{self, Record},
};
use crate::{
    control::config::DnsSection,
    proxy::{
        resolve::{Answer, Candidate},
        target::Name,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("reading the system resolver config (/etc/resolv.conf): {0}")]
    System(NetError),
    #[error("setting up the resolver: {0}")]
    Build(NetError),
    #[error("looking up {name}: {source}")]
    Lookup { name: String, source: NetError },
}

/// What one lookup of an `srv` name found.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub members: Vec<Member>,
    /// When the shortest TTL among the records (SRV and addresses) runs out.
    pub valid_until: Instant,
}

pub struct SrvResolver {
    resolver: TokioResolver,
}

impl SrvResolver {
    /// A resolver asking `dns.servers` (or the system's), for IPv6 target addresses only when
    /// the proxy can send to them, and never from a local port in `sip_ports` (the XDP program
    /// would take the answer for SIP).
    pub fn new(dns: &DnsSection, sip_ports: &[u16], ipv6: bool) -> Result<Self, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let servers = dns.server_addrs().unwrap_or_default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider).map_err(DnsError::System)?
        } else {
            let name_servers = servers.iter().map(name_server).collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                provider,
            )
        };
        let options = builder.options_mut();
        options.timeout = Duration::from_millis(dns.timeout_ms);
        options.attempts = 2;
        options.ip_strategy = if ipv6 {
            LookupIpStrategy::Ipv4AndIpv6
        } else {
            LookupIpStrategy::Ipv4Only
        };
        options.avoid_local_udp_ports = Arc::new(sip_ports.iter().copied().collect::<HashSet<_>>());
        let resolver = builder.build().map_err(DnsError::Build)?;
        Ok(SrvResolver { resolver })
    }

    /// Looks up the SRV records of `srv` (a configured name, see [`srv::query_name`]) and the
    /// addresses of their targets. A name or target that does not exist resolves to no
    /// backends; any other failure (timeout, server failure) is an error, so the caller keeps
    /// the backends it has.
    pub async fn resolve(&self, srv: &str) -> Result<Resolved, DnsError> {
        let name = srv::query_name(srv);
        let lookup_error = |name: &str, source| DnsError::Lookup {
            name: name.to_string(),
            source,
        };
        let answer = match self.resolver.srv_lookup(name.as_str()).await {
            Ok(answer) => answer,
            Err(e) if e.is_no_records_found() => {
                log::debug!("{name}: {e}");
                return Ok(Resolved {
                    members: Vec::new(),
                    valid_until: Instant::now(),
                });
            }
            Err(e) => return Err(lookup_error(&name, e)),
        };
        let mut valid_until = answer.valid_until();
        let mut records = Vec::new();
        for record in answer.answers() {
            let RData::SRV(s) = &record.data else {
                continue;
            };
            let target = s.target.to_ascii();
            let mut addresses = Vec::new();
            if target != "." {
                match self.resolver.lookup_ip(s.target.clone()).await {
                    Ok(ips) => {
                        valid_until = valid_until.min(ips.valid_until());
                        addresses = ips.iter().collect();
                    }
                    Err(e) if e.is_no_records_found() => {
                        log::debug!("{name}: target {target}: {e}");
                    }
                    Err(e) => return Err(lookup_error(&target, e)),
                }
            }
            records.push(Record {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target,
                addresses,
            });
        }
        Ok(Resolved {
            members: srv::members(&records),
            valid_until,
        })
    }
}

impl SrvResolver {
    /// A next hop's name as RFC 3263 §4 resolves it for UDP: with a port, its A/AAAA records
    /// on that port; without, its `_sip._udp` SRV records, and when there are none, its A/AAAA
    /// records on 5060. NAPTR (§4.1) is skipped: it chooses a transport, and we speak UDP.
    pub async fn resolve_next_hop(&self, name: &Name) -> Answer {
        let srv = match name.port {
            Some(_) => None,
            None => match self.resolve(&name.host).await {
                Ok(r) if !r.members.is_empty() => Some(r),
                Ok(_) => None,
                Err(e) => {
                    log::debug!("{e}");
                    return Answer::Failed;
                }
            },
        };
        if let Some(r) = srv {
            return Answer::Found {
                candidates: r
                    .members
                    .iter()
                    .map(|m| Candidate {
                        addr: m.address,
                        priority: m.priority,
                        weight: m.weight,
                    })
                    .collect(),
                valid_until: r.valid_until,
            };
        }
        let port = name.port.unwrap_or(5060);
        match self.resolver.lookup_ip(name.host.as_str()).await {
            Ok(ips) => Answer::Found {
                candidates: ips
                    .iter()
                    .map(|ip| Candidate {
                        addr: SocketAddr::new(ip, port),
                        priority: 0,
                        weight: 1.0,
                    })
                    .collect(),
                valid_until: ips.valid_until(),
            },
            Err(e) if e.is_no_records_found() => Answer::NoSuchName,
            Err(e) => {
                log::debug!("looking up {}: {e}", name.host);
                Answer::Failed
            }
        }
    }
}

/// A configured name server: UDP, and TCP for answers too long for a datagram, on its port.
fn name_server(addr: &SocketAddr) -> NameServerConfig {
    let mut config = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut config.connections {
        connection.port = addr.port();
    }
    config
}

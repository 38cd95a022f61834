//! The filter as the operator states it ([`FilterSettings`]) and as the XDP program reads it
//! ([`sip_common::FilterConfig`]).

use sip_common::{
    CLOCK_QUANTUM_NS, FLAG_ALLOWLIST, FLAG_BLOCKLIST, FLAG_RATE_LIMIT, FLAG_STEERING, FilterConfig,
    MAX_SCANNER_LEN, MAX_SCANNERS, MAX_SIP_PORTS, MAX_STEER_CPUS, ScannerSig,
};

use crate::control::cidr::Cidr;

/// Default scanner signatures: SIPVicious (`friendly-scanner`, `sipvicious`) and sipcli.
pub const DEFAULT_SCANNERS: [&str; 3] = ["friendly-scanner", "sipvicious", "sipcli"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterSettings {
    /// UDP ports that carry SIP (1 to 8).
    pub ports: Vec<u16>,
    /// TCP ports of the SIP TCP/TLS listeners (0 to 8): their SYNs are filtered.
    pub tcp_ports: Vec<u16>,
    /// Packets per second allowed per source address; 0 turns the rate limiter off.
    pub rate_limit_pps: u32,
    /// Packets a source may send at once above its rate.
    pub rate_limit_burst: u32,
    /// Sources exempt from the rate limit (carriers, trunks).
    pub allowlist: Vec<Cidr>,
    /// Sources dropped outright.
    pub blocklist: Vec<Cidr>,
    /// `User-Agent` substrings (case-insensitive) that mark a scanner.
    pub scanners: Vec<String>,
    /// CPUs to steer Call-IDs to, in worker order; empty turns steering off.
    pub steer_cpus: Vec<u32>,
}

impl Default for FilterSettings {
    fn default() -> Self {
        Self {
            ports: vec![5060],
            tcp_ports: Vec::new(),
            rate_limit_pps: 200,
            rate_limit_burst: 400,
            allowlist: Vec::new(),
            blocklist: Vec::new(),
            scanners: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
            steer_cpus: Vec::new(),
        }
    }
}

/// The key of the XDP rate table's hash (`sip_common::rate_tag`): secret, and one per process,
/// so a reload keeps every source in its set of the table.
pub fn rate_key() -> [u64; 2] {
    crate::sys::secret_words("rate table")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("sip_ports: between 1 and {MAX_SIP_PORTS} ports are needed, got {0}")]
    PortCount(usize),
    #[error("sip_ports: port 0 is not a port")]
    PortZero,
    #[error("sip_tcp_ports: at most {MAX_SIP_PORTS} ports (none is allowed), got {0}")]
    TcpPortCount(usize),
    #[error("sip_tcp_ports: port 0 is not a port")]
    TcpPortZero,
    #[error("filter.scanner_user_agents: at most {MAX_SCANNERS} signatures, got {0}")]
    ScannerCount(usize),
    #[error(
        "filter.scanner_user_agents: `{0}` must be 1 to {MAX_SCANNER_LEN} bytes of printable ASCII"
    )]
    ScannerSignature(String),
    #[error("filter.rate_limit_burst: must be at least 1 when rate_limit_pps is set")]
    Burst,
    #[error("workers: at most {MAX_STEER_CPUS} CPUs can be steered to, got {0}")]
    SteerCount(usize),
}

impl FilterSettings {
    /// Checks the limits the XDP program imposes; the errors name the config field.
    pub fn validate(&self) -> Result<(), FilterError> {
        if self.ports.is_empty() || self.ports.len() > MAX_SIP_PORTS {
            return Err(FilterError::PortCount(self.ports.len()));
        }
        if self.ports.contains(&0) {
            return Err(FilterError::PortZero);
        }
        if self.tcp_ports.len() > MAX_SIP_PORTS {
            return Err(FilterError::TcpPortCount(self.tcp_ports.len()));
        }
        if self.tcp_ports.contains(&0) {
            return Err(FilterError::TcpPortZero);
        }
        if self.scanners.len() > MAX_SCANNERS {
            return Err(FilterError::ScannerCount(self.scanners.len()));
        }
        for s in &self.scanners {
            let ok = !s.is_empty()
                && s.len() <= MAX_SCANNER_LEN
                && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
            if !ok {
                return Err(FilterError::ScannerSignature(s.clone()));
            }
        }
        if self.rate_limit_pps > 0 && self.rate_limit_burst == 0 {
            return Err(FilterError::Burst);
        }
        if self.steer_cpus.len() > MAX_STEER_CPUS {
            return Err(FilterError::SteerCount(self.steer_cpus.len()));
        }
        Ok(())
    }

    /// The `CONFIG` map entry for these settings (the rate table's key: [`rate_key`]).
    pub fn to_map_config(&self) -> Result<FilterConfig, FilterError> {
        self.validate()?;
        let mut c = FilterConfig::default();
        for (slot, port) in c.ports.iter_mut().zip(&self.ports) {
            *slot = *port;
        }
        c.num_ports = self.ports.len() as u32;
        for (slot, port) in c.tcp_ports.iter_mut().zip(&self.tcp_ports) {
            *slot = *port;
        }
        c.num_tcp_ports = self.tcp_ports.len() as u32;
        if self.rate_limit_pps > 0 {
            c.flags |= FLAG_RATE_LIMIT;
            c.rate_interval_ns = 1_000_000_000 / self.rate_limit_pps as u64;
            c.rate_tolerance_ns =
                c.rate_interval_ns * self.rate_limit_burst as u64 + CLOCK_QUANTUM_NS;
            c.rate_key = rate_key();
        }
        if !self.blocklist.is_empty() {
            c.flags |= FLAG_BLOCKLIST;
        }
        if !self.allowlist.is_empty() {
            c.flags |= FLAG_ALLOWLIST;
        }
        for (slot, sig) in c.scanners.iter_mut().zip(&self.scanners) {
            *slot = scanner_sig(sig.as_bytes());
        }
        c.num_scanners = self.scanners.len() as u32;
        if !self.steer_cpus.is_empty() {
            c.flags |= FLAG_STEERING;
            for (slot, cpu) in c.steer_cpus.iter_mut().zip(&self.steer_cpus) {
                *slot = *cpu;
            }
            c.steer_len = self.steer_cpus.len() as u32;
        }
        Ok(c)
    }
}

/// A signature as the kernel compares it: every byte ORed with 0x20 (ASCII case folding, the
/// same fold the program applies to the packet), in two little-endian words with their masks.
fn scanner_sig(s: &[u8]) -> ScannerSig {
    let mut sig = ScannerSig::default();
    for (i, b) in s.iter().take(MAX_SCANNER_LEN).enumerate() {
        sig.words[i / 8] |= ((b | 0x20) as u64) << ((i % 8) * 8);
        sig.masks[i / 8] |= 0xff << ((i % 8) * 8);
    }
    sig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_map() {
        let c = FilterSettings::default().to_map_config().unwrap();
        assert_eq!(c.num_ports, 1);
        assert_eq!(c.ports[0], 5060);
        assert_eq!(c.flags & FLAG_RATE_LIMIT, FLAG_RATE_LIMIT);
        assert_eq!(c.rate_interval_ns, 5_000_000);
        assert_eq!(c.rate_tolerance_ns, 2_000_000_000 + CLOCK_QUANTUM_NS);
        assert_eq!(c.num_scanners, 3);
        assert_eq!(c.flags & FLAG_STEERING, 0);
    }

    #[test]
    fn signature_words_fold_case() {
        let s = scanner_sig(b"Friendly-Scanner");
        assert_eq!(s.words[0].to_le_bytes(), *b"friendly");
        assert_eq!(s.words[1].to_le_bytes(), *b"-scanner");
        assert_eq!(s.masks, [u64::MAX, u64::MAX]);
        let s = scanner_sig(b"sipcli");
        assert_eq!(s.masks, [0xffff_ffff_ffff, 0]);
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = FilterSettings {
            ports: vec![],
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("sip_ports")
        );
        s.ports = vec![5060];
        s.scanners = vec!["x".repeat(17)];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("filter.scanner_user_agents")
        );
    }
}

//! A switched LAN in network namespaces: one namespace holds a bridge, every host is a
//! namespace with a veth into it. The edge (sip-fastpath) has one interface, like a
//! single-homed server, so XDP sees the callers and the backends alike.

use anyhow::{Context, bail};

use crate::{EDGE_IFACE, Netns, run};

impl Host {
    /// Its interface: [`EDGE_IFACE`] for an edge (roles `edge`, `edge2`…), `eth0` for the others.
    pub fn iface(&self) -> &'static str {
        if self.role.starts_with("edge") {
            EDGE_IFACE
        } else {
            "eth0"
        }
    }
}

/// One host on the LAN.
pub struct Host {
    pub role: String,
    pub addr: String,
    pub ns: Netns,
    /// The bridge port leading to this host (in the switch namespace).
    pub port: String,
}

/// The switch and its hosts; everything is deleted on drop (hosts first).
pub struct Lan {
    /// Hosts off the LAN (phones behind a NAT host), deleted first.
    pub private: Vec<Netns>,
    pub hosts: Vec<Host>,
    pub switch: Netns,
    tag: String,
}

/// A host on a private network behind a LAN host that masquerades it (a phone behind a home
/// router): its Contact is a private address nobody on the LAN can reach.
pub struct Natted<'a> {
    pub ns: &'a Netns,
    /// Its own (private) address.
    pub addr: String,
    /// The NAT host's LAN address: where its datagrams appear to come from.
    pub public: String,
}

impl Lan {
    /// `hosts`: (role, IPv4 address in 192.0.2.0/24). Roles starting with `edge` get the
    /// interface [`EDGE_IFACE`], the others `eth0`.
    pub fn new(tag: &str, hosts: &[(&str, &str)]) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let switch = Netns::new(&format!("sfp-{tag}-sw-{pid}"))?;
        switch.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        switch.exec(&["ip", "link", "set", "br0", "up"])?;
        let mut lan = Lan {
            private: Vec::new(),
            hosts: Vec::new(),
            switch,
            tag: tag.to_string(),
        };
        for (i, (role, addr)) in hosts.iter().enumerate() {
            let ns = Netns::new(&format!("sfp-{tag}-{role}-{pid}"))?;
            let iface = if role.starts_with("edge") {
                EDGE_IFACE
            } else {
                "eth0"
            };
            let port = format!("p{i}");
            run(&[
                "ip",
                "link",
                "add",
                iface,
                "netns",
                &ns.name,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &lan.switch.name,
            ])
            .with_context(|| format!("veth for {role}"))?;
            lan.switch
                .exec(&["ip", "link", "set", &port, "master", "br0"])?;
            lan.switch.exec(&["ip", "link", "set", &port, "up"])?;
            ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", iface])?;
            ns.exec(&["ip", "link", "set", iface, "up"])?;
            // Full checksums from senders (XDP's CPUMAP redirect loses CHECKSUM_PARTIAL), and
            // GRO on the edge for native XDP on veth.
            ns.exec(&["ethtool", "-K", iface, "tx", "off"])?;
            if role.starts_with("edge") {
                let _ = ns.exec(&["ethtool", "-K", iface, "gro", "on"]);
            }
            lan.hosts.push(Host {
                role: role.to_string(),
                addr: addr.to_string(),
                ns,
                port,
            });
        }
        Ok(lan)
    }

    /// One more source address for the host `role` (inside the LAN's /24, so replies need
    /// no routes).
    pub fn add_address(&self, role: &str, addr: &str) -> anyhow::Result<()> {
        let h = self.host(role);
        h.ns.exec(&["ip", "addr", "add", &format!("{addr}/32"), "dev", h.iface()])
            .map(drop)
    }

    /// Puts a new host `name` on the private network 10.0.`subnet`.0/24 behind the LAN host
    /// `router`, which forwards and masquerades it (nftables) onto the LAN.
    pub fn add_natted(&mut self, router: &str, name: &str, subnet: u8) -> anyhow::Result<()> {
        let pid = std::process::id();
        let ns = Netns::new(&format!("sfp-{}-{name}-{pid}", self.tag))?;
        let r = &self.host(router).ns;
        run(&[
            "ip", "link", "add", "eth0", "netns", &ns.name, "type", "veth", "peer", "name",
            "priv0", "netns", &r.name,
        ])
        .with_context(|| format!("veth for {name}"))?;
        let (gw, addr) = (format!("10.0.{subnet}.1"), format!("10.0.{subnet}.2"));
        r.exec(&["ip", "addr", "add", &format!("{gw}/24"), "dev", "priv0"])?;
        r.exec(&["ip", "link", "set", "priv0", "up"])?;
        r.exec(&["ethtool", "-K", "priv0", "tx", "off"])?;
        r.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let rules = "table ip nat {\n  chain post {\n    type nat hook postrouting priority 100;\n    \
                     oifname \"eth0\" masquerade\n  }\n}\n";
        let file = std::env::temp_dir().join(format!("sfp-nat-{name}-{pid}.nft"));
        std::fs::write(&file, rules)?;
        let result = r.exec(&["nft", "-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        result?;
        ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        ns.exec(&["ip", "link", "set", "eth0", "up"])?;
        ns.exec(&["ethtool", "-K", "eth0", "tx", "off"])?;
        ns.exec(&["ip", "route", "add", "default", "via", &gw])?;
        self.private.push(ns);
        Ok(())
    }

    /// A host added by [`Self::add_natted`], with its addresses.
    pub fn natted(&self, name: &str, router: &str) -> Natted<'_> {
        let ns = self
            .private
            .iter()
            .find(|n| n.name == format!("sfp-{}-{name}-{}", self.tag, std::process::id()))
            .unwrap_or_else(|| panic!("no natted host `{name}`"));
        let addr = ns
            .exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .ok()
            .and_then(|o| Some(o.split_whitespace().nth(3)?.split('/').next()?.to_string()))
            .unwrap_or_default();
        Natted {
            ns,
            addr,
            public: self.host(router).addr.clone(),
        }
    }

    pub fn host(&self, role: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.role == role)
            .unwrap_or_else(|| panic!("no host `{role}` on this LAN"))
    }

    /// Random loss of `percent` % of the UDP datagrams crossing the switch (every datagram
    /// between two hosts crosses it once): nftables' `numgen random` in the bridge's forward
    /// hook, since this kernel has no `netem` qdisc. Senders see no error, as on a real link.
    pub fn set_loss(&self, percent: u32) -> anyhow::Result<()> {
        if percent > 50 {
            bail!("loss {percent}% is not a test of retransmissions");
        }
        let rules = format!(
            "table bridge sfp_loss {{\n  chain links {{\n    type filter hook forward priority 0;\n    \
             meta l4proto udp numgen random mod 100 < {percent} counter drop\n  }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("sfp-loss-{}.nft", std::process::id()));
        std::fs::write(&file, rules)?;
        let result = self
            .switch
            .exec(&["nft", "-f", &file.display().to_string()]);
        let _ = std::fs::remove_file(&file);
        result.map(drop)
    }

    /// Datagrams the loss rule dropped.
    pub fn lost(&self) -> u64 {
        self.switch
            .exec(&["nft", "list", "table", "bridge", "sfp_loss"])
            .ok()
            .and_then(|t| {
                let after = t.split("packets ").nth(1)?;
                after.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first (their veths go with them), then the switch.
        self.private.clear();
        self.hosts.clear();
    }
}

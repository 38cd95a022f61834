//! A switched LAN in network namespaces: one namespace holds a bridge, every host is a
//! namespace with a veth into it. The edge (sip-fastpath) has one interface, like a
//! single-homed server, so XDP sees the callers and the backends alike.

use anyhow::{Context, bail};

use crate::{EDGE_IFACE, Netns, run};

impl Host {
    /// Its interface: [`EDGE_IFACE`] for the edge, `eth0` for the others.
    pub fn iface(&self) -> &'static str {
        if self.role == "edge" {
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
    pub hosts: Vec<Host>,
    pub switch: Netns,
}

impl Lan {
    /// `hosts`: (role, IPv4 address in 192.0.2.0/24). The role `edge` gets the interface
    /// [`EDGE_IFACE`], the others `eth0`.
    pub fn new(tag: &str, hosts: &[(&str, &str)]) -> anyhow::Result<Self> {
        let pid = std::process::id();
        let switch = Netns::new(&format!("sfp-{tag}-sw-{pid}"))?;
        switch.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        switch.exec(&["ip", "link", "set", "br0", "up"])?;
        let mut lan = Lan {
            hosts: Vec::new(),
            switch,
        };
        for (i, (role, addr)) in hosts.iter().enumerate() {
            let ns = Netns::new(&format!("sfp-{tag}-{role}-{pid}"))?;
            let iface = if *role == "edge" { EDGE_IFACE } else { "eth0" };
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
            if *role == "edge" {
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
        self.hosts.clear();
    }
}

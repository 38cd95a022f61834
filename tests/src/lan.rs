//! A switched LAN in network namespaces: one namespace holds a bridge, every host is a
//! namespace with a veth into it. The edge (sip-fastpath) has one interface, like a
//! single-homed server, so XDP sees the callers and the backends alike.

use anyhow::{Context, bail};

use crate::{Netns, run};

/// The edge's interface inside its namespace (XDP attaches here).
pub const LAN_EDGE_IFACE: &str = "ve";

/// One host on the LAN.
pub struct Host {
    pub role: String,
    pub addr: String,
    pub ns: Netns,
    /// The bridge port leading to this host (in the switch namespace): its egress is the
    /// host's ingress, where `tc netem` goes.
    pub port: String,
}

/// The switch and its hosts; everything is deleted on drop (hosts first).
pub struct Lan {
    pub hosts: Vec<Host>,
    pub switch: Netns,
}

impl Lan {
    /// `hosts`: (role, IPv4 address in 192.0.2.0/24). The role `edge` gets the interface
    /// [`LAN_EDGE_IFACE`], the others `eth0`.
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
            let iface = if *role == "edge" {
                LAN_EDGE_IFACE
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

    pub fn host(&self, role: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.role == role)
            .unwrap_or_else(|| panic!("no host `{role}` on this LAN"))
    }

    /// Random loss of `percent` % on every port of the switch, both directions of each link.
    pub fn set_loss(&self, percent: u32) -> anyhow::Result<()> {
        if percent > 50 {
            bail!("loss {percent}% is not a test of retransmissions");
        }
        for h in &self.hosts {
            let loss = format!("{percent}%");
            self.switch.exec(&[
                "tc", "qdisc", "replace", "dev", &h.port, "root", "netem", "loss", &loss,
            ])?;
            let iface = if h.role == "edge" {
                LAN_EDGE_IFACE
            } else {
                "eth0"
            };
            h.ns.exec(&[
                "tc", "qdisc", "replace", "dev", iface, "root", "netem", "loss", &loss,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first (their veths go with them), then the switch.
        self.hosts.clear();
    }
}

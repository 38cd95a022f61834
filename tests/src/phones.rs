//! Phones behind NAT registering through the edge to a real registrar: the LAN holds the edge,
//! Kamailio as registrar and location server (`tests/data/kamailio/registrar.cfg`, with its
//! `path_mode`), and two home routers; each router masquerades one phone's private network, so
//! a phone's Contact is an address nobody on the LAN can reach. Used by the two-way tests and
//! the demo; everything is stopped and removed on drop.

use crate::{
    Daemon, EDGE_ADDR, EDGE_IFACE,
    bed::config_full,
    kamailio::{self, Kamailio},
    lan::{Lan, Natted},
    require_root,
    sipp::{Backend, Caller, CallerReport, LogDir},
};

pub const REGISTRAR: &str = "192.0.2.11";

/// Fields drop in order: the daemon and the registrar stop before the logs and namespaces go.
pub struct Phones {
    pub daemon: Daemon,
    pub registrar: Kamailio,
    pub logs: LogDir,
    pub lan: Lan,
}

impl Phones {
    /// The LAN, the registrar (`path_mode` 0: it keeps a Path whatever the UA supports) and the
    /// edge with `top` config lines (the flow secret) and the registrar as its one backend.
    pub fn new(tag: &str, top: &str) -> anyhow::Result<Self> {
        require_root();
        let mut lan = Lan::new(
            tag,
            &[
                ("edge", EDGE_ADDR),
                ("registrar", REGISTRAR),
                ("nat-a", "192.0.2.21"),
                ("nat-b", "192.0.2.22"),
            ],
        )?;
        lan.add_natted("nat-a", "phone-a", 1)?;
        lan.add_natted("nat-b", "phone-b", 2)?;
        let logs = LogDir::new(tag)?;
        let cfg = kamailio::config(
            "registrar.cfg",
            &[("LISTEN", REGISTRAR), ("PATH_MODE", "0")],
        )?;
        let registrar = Kamailio::start(&lan.host("registrar").ns, &cfg, &logs.0, "registrar")?;
        let config = config_full(
            1000,
            top,
            &format!("[[backends]]\naddress = \"{REGISTRAR}:5060\"\n"),
        );
        let daemon = Daemon::start(&lan.host("edge").ns, EDGE_IFACE, "auto", &config, tag)?;
        Ok(Phones {
            daemon,
            registrar,
            logs,
            lan,
        })
    }

    /// Phone `a` (10.0.1.2 behind 192.0.2.21) or `b` (10.0.2.2 behind 192.0.2.22).
    pub fn phone(&self, which: &str) -> Natted<'_> {
        self.lan
            .natted(&format!("phone-{which}"), &format!("nat-{which}"))
    }

    /// `calls` of `scenario` from phone `which` to the edge; `extra` sipp arguments.
    pub fn run(
        &self,
        which: &str,
        scenario: &str,
        calls: u32,
        extra: &[&str],
    ) -> anyhow::Result<CallerReport> {
        let phone = self.phone(which);
        let target = format!("{EDGE_ADDR}:5060");
        Caller {
            calls,
            rate: 5,
            extra,
            ..Caller::new(phone.ns, &phone.addr, &target, scenario)
        }
        .run(&self.logs.0)
    }

    /// Phone `which` registers `user`@example.test through the edge.
    pub fn register(&self, which: &str, user: &str) -> anyhow::Result<CallerReport> {
        self.run(
            which,
            "phone_register",
            1,
            &["-s", user, "-key", "supported", "timer"],
        )
    }

    /// Phone `which` answers calls for `user` with `scenario` (until dropped).
    pub fn answer(
        &self,
        which: &str,
        user: &str,
        scenario: &str,
        extra: &[&str],
    ) -> anyhow::Result<Backend> {
        let phone = self.phone(which);
        let mut args = vec!["-s", user];
        args.extend_from_slice(extra);
        Backend::start_with(phone.ns, &phone.addr, scenario, &self.logs.0, &args)
    }

    /// The edge's `/metrics`, fetched from inside its namespace.
    pub fn metrics(&self) -> anyhow::Result<String> {
        crate::metrics_of(&self.lan.host("edge").ns)
    }
}

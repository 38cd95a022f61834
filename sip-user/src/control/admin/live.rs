//! The filter entries the admin API adds while the daemon runs: blocklist and allowlist CIDRs,
//! scanner signatures and a rate limit, each optionally with an expiry. The XDP maps hold the
//! config file's filter plus these ([`LiveFilter::merged`]); a reload replaces the config's
//! part and keeps these, so a SIGHUP does not undo what an operator did through the API. Pure
//! state with the clock passed in, like the proxy's tables.

use std::time::{Duration, Instant};

use crate::{
    control::cidr::Cidr,
    control::filter::{FilterError, FilterSettings},
};

/// One of the two CIDR lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Blocklist,
    Allowlist,
}

impl List {
    /// The name in the API's paths and the config's `filter` table.
    pub fn name(self) -> &'static str {
        match self {
            List::Blocklist => "blocklist",
            List::Allowlist => "allowlist",
        }
    }
}

/// A per-source rate limit (see `filter.rate_limit_pps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub pps: u32,
    pub burst: u32,
}

/// A live entry: what, until when, and who added it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    pub value: T,
    pub expires: Option<Instant>,
    pub by: String,
}

impl<T> Entry<T> {
    /// Seconds left, rounded up; `None` for an entry without expiry.
    pub fn expires_in_s(&self, now: Instant) -> Option<u64> {
        self.expires
            .map(|at| at.saturating_duration_since(now).as_millis().div_ceil(1000) as u64)
    }
}

/// A change the API asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    AddCidr {
        list: List,
        cidr: Cidr,
        ttl: Option<Duration>,
    },
    RemoveCidr {
        list: List,
        cidr: Cidr,
    },
    AddScanner {
        signature: String,
        ttl: Option<Duration>,
    },
    RemoveScanner {
        signature: String,
    },
    SetRateLimit {
        limit: RateLimit,
        ttl: Option<Duration>,
    },
    /// Back to the config's rate limit.
    ClearRateLimit,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    #[error(
        "{value} is in the config file's filter.{field}: remove it there and reload (the API \
         changes only its own entries)"
    )]
    InConfig { field: &'static str, value: String },
    #[error("{value} is not in the live {field} (the API's entries: {listed})")]
    NotListed {
        field: &'static str,
        value: String,
        listed: String,
    },
    #[error("no rate limit was set through the API (the config's applies)")]
    NoRateLimit,
    #[error("ttl_s: must be at least 1 second")]
    Ttl,
    /// The filter with the change would not load (too many signatures, a bad one…).
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// Everything the API added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveFilter {
    pub blocklist: Vec<Entry<Cidr>>,
    pub allowlist: Vec<Entry<Cidr>>,
    pub scanners: Vec<Entry<String>>,
    pub rate_limit: Option<Entry<RateLimit>>,
}

impl LiveFilter {
    /// What the maps hold: `config` with the live entries added (and the live rate limit, if
    /// one is set, instead of the config's).
    pub fn merged(&self, config: &FilterSettings) -> FilterSettings {
        let mut s = config.clone();
        for (mine, theirs) in [
            (&self.blocklist, &mut s.blocklist),
            (&self.allowlist, &mut s.allowlist),
        ] {
            for e in mine {
                if !theirs.iter().any(|c| same(c, &e.value)) {
                    theirs.push(e.value);
                }
            }
        }
        for e in &self.scanners {
            if !s.scanners.iter().any(|c| c.eq_ignore_ascii_case(&e.value)) {
                s.scanners.push(e.value.clone());
            }
        }
        if let Some(e) = &self.rate_limit {
            s.rate_limit_pps = e.value.pps;
            s.rate_limit_burst = e.value.burst;
        }
        s
    }

    /// Applies `change` by `by` if the filter it makes is valid; returns what changed, for the
    /// log. Adding an entry that is already live replaces it (a new expiry).
    pub fn change(
        &mut self,
        change: Change,
        by: &str,
        now: Instant,
        config: &FilterSettings,
    ) -> Result<String, LiveError> {
        let mut next = self.clone();
        let expiry = |ttl: Option<Duration>| -> Result<Option<Instant>, LiveError> {
            match ttl {
                Some(t) if t < Duration::from_secs(1) => Err(LiveError::Ttl),
                Some(t) => Ok(Some(now + t)),
                None => Ok(None),
            }
        };
        let for_ = |ttl: Option<Duration>| match ttl {
            Some(t) => format!(" for {} s", t.as_secs()),
            None => String::new(),
        };
        let what = match change {
            Change::AddCidr { list, cidr, ttl } => {
                let cidr = cidr.network();
                if config_list(config, list).iter().any(|c| same(c, &cidr)) {
                    return Err(LiveError::InConfig {
                        field: list.name(),
                        value: cidr.to_string(),
                    });
                }
                let entries = next.list_mut(list);
                entries.retain(|e| !same(&e.value, &cidr));
                entries.push(Entry {
                    value: cidr,
                    expires: expiry(ttl)?,
                    by: by.to_string(),
                });
                format!("added {cidr} to the {}{}", list.name(), for_(ttl))
            }
            Change::RemoveCidr { list, cidr } => {
                let cidr = cidr.network();
                let entries = next.list_mut(list);
                let before = entries.len();
                entries.retain(|e| !same(&e.value, &cidr));
                if entries.len() == before {
                    if config_list(config, list).iter().any(|c| same(c, &cidr)) {
                        return Err(LiveError::InConfig {
                            field: list.name(),
                            value: cidr.to_string(),
                        });
                    }
                    return Err(LiveError::NotListed {
                        field: list.name(),
                        value: cidr.to_string(),
                        listed: listed(entries.iter().map(|e| e.value.to_string())),
                    });
                }
                format!("removed {cidr} from the {}", list.name())
            }
            Change::AddScanner { signature, ttl } => {
                if config
                    .scanners
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&signature))
                {
                    return Err(LiveError::InConfig {
                        field: "scanner_user_agents",
                        value: format!("`{signature}`"),
                    });
                }
                next.scanners
                    .retain(|e| !e.value.eq_ignore_ascii_case(&signature));
                next.scanners.push(Entry {
                    value: signature.clone(),
                    expires: expiry(ttl)?,
                    by: by.to_string(),
                });
                format!("added scanner signature `{signature}`{}", for_(ttl))
            }
            Change::RemoveScanner { signature } => {
                let before = next.scanners.len();
                next.scanners
                    .retain(|e| !e.value.eq_ignore_ascii_case(&signature));
                if next.scanners.len() == before {
                    return Err(LiveError::NotListed {
                        field: "scanner signatures",
                        value: format!("`{signature}`"),
                        listed: listed(next.scanners.iter().map(|e| format!("`{}`", e.value))),
                    });
                }
                format!("removed scanner signature `{signature}`")
            }
            Change::SetRateLimit { limit, ttl } => {
                next.rate_limit = Some(Entry {
                    value: limit,
                    expires: expiry(ttl)?,
                    by: by.to_string(),
                });
                format!(
                    "set the rate limit to {} packets/s, burst {}{}",
                    limit.pps,
                    limit.burst,
                    for_(ttl)
                )
            }
            Change::ClearRateLimit => {
                if next.rate_limit.take().is_none() {
                    return Err(LiveError::NoRateLimit);
                }
                "cleared the API's rate limit (the config's applies)".to_string()
            }
        };
        next.merged(config).validate()?;
        *self = next;
        Ok(what)
    }

    /// Drops the entries whose expiry is at or before `now`; returns them, described.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        let due = |e: Option<Instant>| e.is_some_and(|at| at <= now);
        for list in [List::Blocklist, List::Allowlist] {
            self.list_mut(list).retain(|e| {
                let keep = !due(e.expires);
                if !keep {
                    gone.push(format!(
                        "{} in the {} (added by {})",
                        e.value,
                        list.name(),
                        e.by
                    ));
                }
                keep
            });
        }
        self.scanners.retain(|e| {
            let keep = !due(e.expires);
            if !keep {
                gone.push(format!(
                    "scanner signature `{}` (added by {})",
                    e.value, e.by
                ));
            }
            keep
        });
        if let Some(e) = &self.rate_limit
            && due(e.expires)
        {
            gone.push(format!("the rate limit (set by {})", e.by));
            self.rate_limit = None;
        }
        gone
    }

    /// When the next entry expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        let cidrs = self
            .blocklist
            .iter()
            .chain(&self.allowlist)
            .map(|e| e.expires);
        let scanners = self.scanners.iter().map(|e| e.expires);
        let rate = self.rate_limit.iter().map(|e| e.expires);
        cidrs.chain(scanners).chain(rate).flatten().min()
    }

    /// A reload brought `new` config settings (was `old`): a live rate limit yields to a
    /// changed config rate limit (the file is the newer word); the rest stays. Returns what
    /// was dropped.
    pub fn on_reload(&mut self, old: &FilterSettings, new: &FilterSettings) -> Option<String> {
        let changed = (old.rate_limit_pps, old.rate_limit_burst)
            != (new.rate_limit_pps, new.rate_limit_burst);
        if changed && let Some(e) = self.rate_limit.take() {
            return Some(format!(
                "the API's rate limit ({} packets/s, set by {}) gives way to the reloaded \
                 filter.rate_limit_pps",
                e.value.pps, e.by
            ));
        }
        None
    }

    fn list_mut(&mut self, list: List) -> &mut Vec<Entry<Cidr>> {
        match list {
            List::Blocklist => &mut self.blocklist,
            List::Allowlist => &mut self.allowlist,
        }
    }
}

fn config_list(config: &FilterSettings, list: List) -> &[Cidr] {
    match list {
        List::Blocklist => &config.blocklist,
        List::Allowlist => &config.allowlist,
    }
}

/// The same network, whatever host bits either was written with.
fn same(a: &Cidr, b: &Cidr) -> bool {
    a.network() == b.network()
}

fn listed(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        "none".to_string()
    } else {
        all.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn config() -> FilterSettings {
        FilterSettings {
            blocklist: vec![cidr("203.0.113.0/24")],
            ..FilterSettings::default()
        }
    }

    fn block(s: &str, ttl: Option<u64>) -> Change {
        Change::AddCidr {
            list: List::Blocklist,
            cidr: cidr(s),
            ttl: ttl.map(Duration::from_secs),
        }
    }

    #[test]
    fn live_entries_join_the_config_and_leave_again() {
        let (mut live, cfg, now) = (LiveFilter::default(), config(), Instant::now());
        let what = live
            .change(block("198.51.100.9/24", None), "alice", now, &cfg)
            .unwrap();
        assert_eq!(what, "added 198.51.100.0/24 to the blocklist");
        let merged = live.merged(&cfg);
        assert_eq!(
            merged.blocklist,
            vec![cidr("203.0.113.0/24"), cidr("198.51.100.0/24")]
        );
        let remove = Change::RemoveCidr {
            list: List::Blocklist,
            cidr: cidr("198.51.100.0/24"),
        };
        live.change(remove.clone(), "alice", now, &cfg).unwrap();
        assert_eq!(live.merged(&cfg), cfg);
        assert!(matches!(
            live.change(remove, "alice", now, &cfg),
            Err(LiveError::NotListed { .. })
        ));
    }

    #[test]
    fn config_entries_are_refused_with_the_field_named() {
        let (mut live, cfg, now) = (LiveFilter::default(), config(), Instant::now());
        let e = live
            .change(
                Change::RemoveCidr {
                    list: List::Blocklist,
                    cidr: cidr("203.0.113.0/24"),
                },
                "bob",
                now,
                &cfg,
            )
            .unwrap_err();
        assert!(e.to_string().contains("filter.blocklist"), "{e}");
        let e = live
            .change(block("203.0.113.5/24", None), "bob", now, &cfg)
            .unwrap_err();
        assert!(matches!(e, LiveError::InConfig { .. }), "{e}");
        assert_eq!(live, LiveFilter::default(), "nothing changed");
    }

    #[test]
    fn entries_expire_in_order() {
        let (mut live, cfg, t0) = (LiveFilter::default(), config(), Instant::now());
        live.change(block("198.51.100.0/24", Some(60)), "a", t0, &cfg)
            .unwrap();
        live.change(block("192.0.2.0/24", Some(10)), "a", t0, &cfg)
            .unwrap();
        live.change(block("192.0.2.77/32", None), "a", t0, &cfg)
            .unwrap();
        assert_eq!(live.next_expiry(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(live.blocklist[0].expires_in_s(t0), Some(60));
        assert!(live.expire(t0 + Duration::from_secs(9)).is_empty());
        let gone = live.expire(t0 + Duration::from_secs(10));
        assert_eq!(gone, vec!["192.0.2.0/24 in the blocklist (added by a)"]);
        assert_eq!(live.next_expiry(), Some(t0 + Duration::from_secs(60)));
        live.expire(t0 + Duration::from_secs(61));
        assert_eq!(live.blocklist.len(), 1, "the one without expiry stays");
        assert_eq!(live.next_expiry(), None);
    }

    #[test]
    fn an_invalid_result_changes_nothing() {
        let (mut live, cfg, now) = (LiveFilter::default(), config(), Instant::now());
        let add = |s: &str| Change::AddScanner {
            signature: s.to_string(),
            ttl: None,
        };
        let e = live.change(add("x\u{7f}"), "a", now, &cfg).unwrap_err();
        assert!(
            e.to_string().starts_with("filter.scanner_user_agents"),
            "{e}"
        );
        for i in 0..(sip_common::MAX_SCANNERS - cfg.scanners.len()) {
            live.change(add(&format!("bot{i}")), "a", now, &cfg)
                .unwrap();
        }
        let e = live
            .change(add("one-too-many"), "a", now, &cfg)
            .unwrap_err();
        assert!(matches!(e, LiveError::Filter(FilterError::ScannerCount(_))));
        assert!(matches!(
            live.change(add("Friendly-Scanner"), "a", now, &cfg),
            Err(LiveError::InConfig { .. })
        ));
        assert!(matches!(
            live.change(block("10.0.0.0/8", Some(0)), "a", now, &cfg),
            Err(LiveError::Ttl)
        ));
    }

    #[test]
    fn a_live_rate_limit_yields_to_a_changed_config() {
        let (mut live, cfg, now) = (LiveFilter::default(), config(), Instant::now());
        let limit = RateLimit { pps: 10, burst: 20 };
        live.change(Change::SetRateLimit { limit, ttl: None }, "a", now, &cfg)
            .unwrap();
        assert_eq!(live.merged(&cfg).rate_limit_pps, 10);
        assert_eq!(live.on_reload(&cfg, &cfg.clone()), None, "unchanged: kept");
        assert_eq!(live.merged(&cfg).rate_limit_burst, 20);
        let newer = FilterSettings {
            rate_limit_pps: 50,
            ..cfg.clone()
        };
        assert!(live.on_reload(&cfg, &newer).is_some());
        assert_eq!(live.merged(&newer).rate_limit_pps, 50);
        assert_eq!(
            live.change(Change::ClearRateLimit, "a", now, &newer),
            Err(LiveError::NoRateLimit)
        );
    }
}

//! The admin API's routes. Each handler asks the owner of what it shows or changes — the main
//! loop ([`Control`]) for the filter, reloads and status, the pool keeper for backends, the
//! workers for dialogs — and waits at most [`ANSWER_WITHIN`] for the answer.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::{
    AdminState,
    auth::Caller,
    controller::{ANSWER_WITHIN, Control},
    error::ApiError,
    live::{Change, List, RateLimit},
    views::{
        BackendView, CallDialogView, CallView, DialogsView, FilterView, Status, WorkerDialogs,
    },
};
use crate::{
    backend::keeper::{KeeperCommand, Override},
    control::cidr::Cidr,
    proxy::inspect::{Inspection, Query, Summary},
    sip::dialog::Phase,
};

type Shared = State<Arc<AdminState>>;
type Answer<T> = Result<Json<T>, ApiError>;

pub fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/backends", get(backends))
        .route("/api/v1/backends/{address}", patch(patch_backend))
        .route("/api/v1/filter", get(filter))
        .route(
            "/api/v1/filter/rate_limit",
            put(set_rate_limit).delete(clear_rate_limit),
        )
        .route("/api/v1/filter/{list}", post(add_filter_entry))
        .route(
            "/api/v1/filter/{list}/{*value}",
            axum::routing::delete(remove_filter_entry),
        )
        .route("/api/v1/dialogs", get(dialogs))
        .route("/api/v1/dialogs/{*call_id}", get(call))
        .route("/api/v1/reload", post(reload))
}

/// Sends `make(reply)` to the main loop and waits for the reply.
async fn ask<T>(
    s: &AdminState,
    make: impl FnOnce(oneshot::Sender<T>) -> Control,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    let asked = async {
        s.control.send(make(reply)).await.ok()?;
        answer.await.ok()
    };
    tokio::time::timeout(ANSWER_WITHIN, asked)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::busy("the daemon's main loop"))
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(format!("request body: {}", e.body_text())))
}

async fn status(State(s): Shared) -> Answer<Status> {
    ask(&s, Control::Status).await.map(Json)
}

/// Every worker's summary (`None` for one that did not answer).
async fn summaries(s: &AdminState) -> Vec<Option<Summary>> {
    let asks = (0..s.workers.len()).map(|i| async move {
        match s.workers.inspect(i, Query::Summary, ANSWER_WITHIN).await {
            Some(Inspection::Summary(summary)) => Some(summary),
            _ => None,
        }
    });
    futures_util::future::join_all(asks).await
}

async fn backends(State(s): Shared) -> Answer<Vec<BackendView>> {
    let pool = s.pool.borrow().clone();
    let summaries = summaries(&s).await;
    let views = pool
        .backends
        .iter()
        .map(|b| BackendView {
            address: b.address.to_string(),
            transport: b.transport.to_string(),
            priority: b.priority,
            weight: b.weight,
            draining: b.draining,
            health: if b.health.is_up() { "up" } else { "down" }.to_string(),
            eligible: b.eligible(),
            dialogs: summaries
                .iter()
                .flatten()
                .flat_map(|s| &s.backends)
                .filter(|(a, _)| *a == b.address)
                .map(|(_, n)| n)
                .sum(),
            requests: s.metrics.backend_requests(&b.address),
        })
        .collect();
    Ok(Json(views))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendPatch {
    draining: Option<bool>,
    weight: Option<f64>,
}

async fn patch_backend(
    State(s): Shared,
    Extension(caller): Extension<Caller>,
    Path(address): Path<String>,
    body: Result<Json<BackendPatch>, JsonRejection>,
) -> Answer<BackendView> {
    let patch = json_body(body)?;
    if patch.draining.is_none() && patch.weight.is_none() {
        return Err(ApiError::bad_request(
            "request body: set `draining` (true or false) or `weight` (0 to 65535)",
        ));
    }
    let (reply, answer) = oneshot::channel();
    let command = KeeperCommand::Override {
        address: address.clone(),
        change: Override {
            draining: patch.draining,
            weight: patch.weight,
        },
        reply,
    };
    let asked = async {
        s.keeper.send(command).await.ok()?;
        answer.await.ok()
    };
    let found = tokio::time::timeout(ANSWER_WITHIN, asked)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| ApiError::busy("the backend pool keeper"))??;
    let mut what = Vec::new();
    if let Some(d) = patch.draining {
        what.push(if d { "drained" } else { "undrained" }.to_string());
    }
    if let Some(w) = patch.weight {
        what.push(format!("set the weight {w} of"));
    }
    log::info!("admin: {} {} {found}", caller.name, what.join(" and "));
    let Json(all) = backends(State(s)).await?;
    all.into_iter()
        .find(|b| b.address == found.to_string())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("backend {found} left the pool")))
}

async fn filter(State(s): Shared) -> Answer<FilterView> {
    ask(&s, Control::Filter).await.map(Json)
}

/// Which list a path names.
enum Listed {
    Cidrs(List),
    Scanners,
}

fn listed(name: &str) -> Result<Listed, ApiError> {
    match name {
        "blocklist" => Ok(Listed::Cidrs(List::Blocklist)),
        "allowlist" => Ok(Listed::Cidrs(List::Allowlist)),
        "scanners" => Ok(Listed::Scanners),
        other => Err(ApiError::not_found(format!(
            "no filter list `{other}` (blocklist, allowlist, scanners, rate_limit)"
        ))),
    }
}

fn cidr(text: &str) -> Result<Cidr, ApiError> {
    text.parse::<Cidr>()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn ttl(ttl_s: Option<u64>) -> Option<Duration> {
    ttl_s.map(Duration::from_secs)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    cidr: Option<String>,
    signature: Option<String>,
    ttl_s: Option<u64>,
}

async fn change(s: &AdminState, caller: &Caller, change: Change) -> Answer<FilterView> {
    let by = caller.name.clone();
    let result = ask(s, |reply| Control::ChangeFilter { change, by, reply }).await?;
    Ok(Json(result?))
}

async fn add_filter_entry(
    State(s): Shared,
    Extension(caller): Extension<Caller>,
    Path(list): Path<String>,
    body: Result<Json<NewEntry>, JsonRejection>,
) -> Result<Response, ApiError> {
    let entry = json_body(body)?;
    let request = match (listed(&list)?, entry.cidr, entry.signature) {
        (Listed::Cidrs(list), Some(c), None) => Change::AddCidr {
            list,
            cidr: cidr(&c)?,
            ttl: ttl(entry.ttl_s),
        },
        (Listed::Scanners, None, Some(signature)) => Change::AddScanner {
            signature,
            ttl: ttl(entry.ttl_s),
        },
        (Listed::Cidrs(l), ..) => {
            return Err(ApiError::bad_request(format!(
                "request body: the {} takes {{\"cidr\": \"198.51.100.0/24\", \"ttl_s\": 3600}} \
                 (ttl_s optional)",
                l.name()
            )));
        }
        (Listed::Scanners, ..) => {
            return Err(ApiError::bad_request(
                "request body: scanners take {\"signature\": \"friendly-scanner\", \"ttl_s\": \
                 3600} (ttl_s optional)",
            ));
        }
    };
    let view = change(&s, &caller, request).await?;
    Ok((StatusCode::CREATED, view).into_response())
}

async fn remove_filter_entry(
    State(s): Shared,
    Extension(caller): Extension<Caller>,
    Path((list, value)): Path<(String, String)>,
) -> Answer<FilterView> {
    let request = match listed(&list)? {
        Listed::Cidrs(list) => Change::RemoveCidr {
            list,
            cidr: cidr(&value)?,
        },
        Listed::Scanners => Change::RemoveScanner { signature: value },
    };
    change(&s, &caller, request).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRateLimit {
    pps: u32,
    burst: Option<u32>,
    ttl_s: Option<u64>,
}

async fn set_rate_limit(
    State(s): Shared,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewRateLimit>, JsonRejection>,
) -> Answer<FilterView> {
    let r = json_body(body)?;
    let limit = RateLimit {
        pps: r.pps,
        // The config's default ratio: a burst of two seconds' worth.
        burst: r.burst.unwrap_or(r.pps.saturating_mul(2)),
    };
    let ttl = ttl(r.ttl_s);
    change(&s, &caller, Change::SetRateLimit { limit, ttl }).await
}

async fn clear_rate_limit(
    State(s): Shared,
    Extension(caller): Extension<Caller>,
) -> Answer<FilterView> {
    change(&s, &caller, Change::ClearRateLimit).await
}

async fn dialogs(State(s): Shared) -> Answer<DialogsView> {
    let summaries = summaries(&s).await;
    let mut by_state: BTreeMap<String, usize> = Phase::COUNTED
        .iter()
        .map(|p| (p.name().to_string(), 0))
        .collect();
    let mut workers = Vec::new();
    for (i, summary) in summaries.iter().enumerate() {
        if let Some(summary) = summary {
            for (phase, n) in Phase::COUNTED.iter().zip(summary.phases) {
                *by_state.entry(phase.name().to_string()).or_default() += n;
            }
        }
        workers.push(WorkerDialogs {
            worker: i,
            cpu: s.cpus.get(i).copied().unwrap_or(i as u32),
            dialogs: summary.as_ref().map(|s| s.phases.iter().sum()),
            transactions: summary.as_ref().map(|s| s.transactions),
        });
    }
    Ok(Json(DialogsView {
        total: by_state.values().sum(),
        by_state,
        transactions: summaries.iter().flatten().map(|s| s.transactions).sum(),
        workers,
    }))
}

async fn call(State(s): Shared, Path(call_id): Path<String>) -> Answer<CallView> {
    let worker = s.workers.owner_of(&call_id);
    let found = match s
        .workers
        .inspect(worker, Query::Call(call_id.clone()), ANSWER_WITHIN)
        .await
    {
        Some(Inspection::Call(found)) => found,
        _ => return Err(ApiError::busy(&format!("worker {worker}"))),
    };
    if found.is_empty() {
        return Err(ApiError::not_found(format!(
            "no dialog with Call-ID `{call_id}` (it would be on worker {worker})"
        )));
    }
    Ok(Json(CallView {
        call_id,
        worker,
        cpu: s.cpus.get(worker).copied().unwrap_or(worker as u32),
        dialogs: found
            .into_iter()
            .map(|d| CallDialogView {
                state: d.phase.name().to_string(),
                caller_tag: d.caller_tag,
                callee_tag: d.callee_tag,
                backend: d.backend.map(|a| a.to_string()),
                age_s: d.age_ms as f64 / 1000.0,
            })
            .collect(),
    }))
}

async fn reload(State(s): Shared, Extension(caller): Extension<Caller>) -> Response {
    let by = caller.name.clone();
    match ask(&s, |reply| Control::Reload { by, reply }).await {
        Ok(report) => {
            let status = if report.ok {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (status, Json(report)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

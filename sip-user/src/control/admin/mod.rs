//! The admin HTTP API (axum) and the Prometheus endpoint.
//!
//! The API listens on `admin.listen` and needs a bearer token from `admin.tokens_file` on every
//! route ([`auth`]): `read` tokens may `GET`, `write` tokens may also change things, and every
//! change is logged with the token's name. `/metrics` stays on its own listener without
//! authentication, as Prometheus expects. The routes are in [`routes`]; what they change is
//! owned elsewhere and asked by message: the filter and reloads by the main loop
//! ([`controller::Controller`]), the backends by the pool keeper, the dialogs by the workers.

pub mod auth;
pub mod controller;
pub mod error;
pub mod https;
pub mod live;
mod routes;
pub mod views;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use axum::{
    Router,
    extract::{ConnectInfo, Request, State, connect_info::Connected},
    http::{Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::{
    auth::{Role, Tokens},
    controller::Control,
    error::ApiError,
    https::ClientAddr,
};
use crate::{
    backend::{Pool, keeper::KeeperCommand},
    control::metrics::Metrics,
    worker::WorkerQueues,
};

/// What the API's handlers reach.
pub struct AdminState {
    /// Replaced when a reload reads the tokens file again.
    pub tokens: Arc<RwLock<Tokens>>,
    pub control: mpsc::Sender<Control>,
    pub keeper: mpsc::Sender<KeeperCommand>,
    pub pool: watch::Receiver<Arc<Pool>>,
    pub workers: WorkerQueues,
    /// Worker `k` runs on `cpus[k]`.
    pub cpus: Vec<u32>,
    pub metrics: Arc<Metrics>,
}

/// The API's router: the routes behind the token check, and a JSON 404 for anything else.
pub fn router(state: Arc<AdminState>) -> Router {
    routes::router()
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// Checks the bearer token: 401 without a known one, 403 for a read-only token on a route that
/// changes something. Hands the caller to the handler (for the log of who changed what).
async fn authorize(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no bearer token: send `Authorization: Bearer <token>` with a token from \
             admin.tokens_file",
        ));
    };
    let caller = s
        .tokens
        .read()
        .ok()
        .and_then(|t| t.check(presented).cloned());
    let Some(caller) = caller else {
        log::warn!(
            "admin: refused {} {} from {peer}: unknown token",
            request.method(),
            request.uri().path()
        );
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown token (tokens are read from admin.tokens_file at start and on reload)",
        ));
    };
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if writes && caller.role < Role::Write {
        log::warn!(
            "admin: refused {} {} from {peer}: `{}` has a read-only token",
            request.method(),
            request.uri().path(),
            caller.name
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` has a read-only token; {} {} needs a `write` token",
                caller.name,
                request.method(),
                request.uri().path()
            ),
        ));
    }
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}: see GET /api/v1/status, /api/v1/backends, /api/v1/filter, \
         /api/v1/dialogs",
        uri.path()
    ))
}

/// Serves `router` on `listener` (plain TCP, or [`https::TlsListener`]) until `cancel` fires.
pub async fn serve<L>(listener: L, router: Router, cancel: CancellationToken)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    for<'a> ClientAddr: Connected<axum::serve::IncomingStream<'a, L>>,
{
    let service = router.into_make_service_with_connect_info::<ClientAddr>();
    if let Err(e) = axum::serve(listener, service)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        log::error!("admin API: {e}");
    }
}

/// Reads the kernel's and the workers' counters into the metrics before a scrape.
pub type Refresh = Arc<dyn Fn(&Metrics) + Send + Sync>;

/// `GET /metrics` in Prometheus's text format, unauthenticated.
pub fn metrics_router(metrics: Arc<Metrics>, refresh: Refresh) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                refresh(&metrics);
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "sip-fastpath serves GET /metrics here (the admin API has its own listener)\n",
            )
                .into_response()
        })
}

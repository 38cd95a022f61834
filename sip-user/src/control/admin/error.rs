//! Every admin API error is JSON (`{"error": "…"}`) whose message names the problem.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{controller::ChangeError, live::LiveError, views::ErrorView};
use crate::backend::keeper::OverrideError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// The main loop or a worker did not answer in time.
    pub fn busy(what: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what} did not answer in time; try again"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorView {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sip-fastpath\""),
            );
        }
        response
    }
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        let status = match e {
            LiveError::InConfig { .. } => StatusCode::CONFLICT,
            LiveError::NotListed { .. } | LiveError::NoRateLimit => StatusCode::NOT_FOUND,
            LiveError::Ttl | LiveError::Filter(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Refused(e) => e.into(),
            ChangeError::Maps(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

impl From<OverrideError> for ApiError {
    fn from(e: OverrideError) -> Self {
        match e {
            OverrideError::NotFound(m) => ApiError::not_found(m),
            OverrideError::Invalid(m) => ApiError::bad_request(m),
        }
    }
}

//! `/metrics`: the Prometheus exposition of `crate::metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::params::{Params, RawQuery};
use super::{blocking, App};
use crate::errors::ServiceError;

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub(crate) async fn metrics(State(app): State<App>, q: RawQuery) -> Result<Response, ServiceError> {
    Params::parse(q, &[])?;
    let shared = app.shared.clone();
    let text = blocking(move || Ok(crate::metrics::render(&shared)?)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

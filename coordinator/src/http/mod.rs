//! The read-only HTTP face for dashboards (axum): versioned JSON under
//! `/api/v1/`, server-sent events of new results and verdicts, an OpenAPI
//! document generated from the handlers, Prometheus `/metrics`, and a
//! built-in dashboard page at `/` with its vendored chart library under
//! `/vendor/` (no token needed for either). Served on its own listener
//! (`http_listen`) beside the gRPC port; nothing here writes to the store.
//!
//! Access: `Authorization: Bearer <token>` whose SHA-256 is listed in
//! `read_tokens`, or no token at all when that list is empty and the listener
//! is loopback. Each token (or the anonymous loopback caller) has a token
//! bucket of `http_rate_per_minute` requests, shared with gRPC
//! `QueryService`. Filters, pages, views and the live feed are the shared
//! read layer in `crate::query`; this module only speaks HTTP.

mod access;
mod aggregation;
mod api;
mod metrics;
mod openapi;
#[doc(hidden)]
pub mod params;
mod stream;

pub(crate) use crate::query::blocking;
use crate::query::views;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::ConfigError;
use crate::errors::ServeError;
use crate::errors::ServiceError;
use crate::state::Shared;

/// The dashboard page (static; it reads everything through the API).
const DASHBOARD: &str = include_str!("dashboard.html");

/// The dashboard's chart library, vendored into the binary so the page
/// needs nothing from outside: uPlot 1.6.32 (MIT, (c) Leon Sorokin), the
/// npm package's `dist/uPlot.iife.min.js` and `dist/uPlot.min.css`
/// unchanged; its licence is served beside it. See `vendor/README.md` for
/// where it came from and how to update it. The page asks for these with
/// `?v=` and the version, so a new version is a new URL for caches.
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("vendor/uPlot.LICENSE");
/// How long browsers may keep the vendored files (a day).
const VENDOR_CACHE: &str = "public, max-age=86400";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) shared: Shared,
    pub(crate) access: Arc<access::Access>,
    pub(crate) feed: Arc<crate::query::feed::Feed>,
}

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, as a sentence naming the parameter at fault.
    pub error: String,
    /// The gRPC status of the same error in snake case (`invalid_argument`,
    /// `unauthenticated`, `not_found`, `resource_exhausted`, `internal`,
    /// `unavailable`).
    pub code: String,
}

/// Every error is answered as an [`ErrorBody`] with the HTTP status from
/// [`ServiceError::codes`]; `code` is the gRPC status of the same error in
/// snake case (`invalid_argument`, `not_found`, ...), so both faces report
/// one code. A rate-limited caller also gets `Retry-After`, an
/// unauthenticated one `WWW-Authenticate`.
impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let (grpc, http) = self.codes();
        let code = StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if code.is_server_error() {
            tracing::error!("http: {self}");
        }
        let retry_after = self.retry_after_s();
        let body = ErrorBody {
            error: self.to_string(),
            code: code_name(grpc).into(),
        };
        let mut resp = (code, axum::Json(body)).into_response();
        if let Some(v) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if code == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vantage\""),
            );
        }
        resp
    }
}

/// The gRPC status name in snake case, as error bodies carry it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
        Code::Unknown => "unknown",
    }
}

/// The whole HTTP application (also used by tests without a listener).
pub(crate) fn router(app: App) -> Router {
    let guarded = Router::new()
        .route("/api/v1/agents", get(api::agents))
        .route("/api/v1/campaigns", get(api::campaigns))
        .route("/api/v1/campaigns/{id}", get(api::campaign))
        .route("/api/v1/results", get(api::results))
        .route("/api/v1/verdicts", get(api::verdicts))
        .route("/api/v1/changes", get(api::changes))
        .route("/api/v1/aggregation", get(aggregation::aggregation))
        .route("/api/v1/sink", get(api::sink))
        .route("/api/v1/stream", get(stream::stream))
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            access::guard,
        ));
    Router::new()
        .route("/", get(dashboard))
        .route("/vendor/uplot.js", get(uplot_js))
        .route("/vendor/uplot.css", get(uplot_css))
        .route("/vendor/uplot-LICENSE.txt", get(uplot_license))
        .route("/api/v1/openapi.json", get(openapi::openapi))
        .merge(guarded)
        .fallback(not_found)
        .with_state(app)
}

async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DASHBOARD,
    )
        .into_response()
}

/// A vendored file: public (a script tag sends no bearer token) and
/// cacheable.
fn vendored(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, VENDOR_CACHE),
        ],
        body,
    )
        .into_response()
}

async fn uplot_js() -> Response {
    vendored("text/javascript; charset=utf-8", UPLOT_JS)
}

async fn uplot_css() -> Response {
    vendored("text/css; charset=utf-8", UPLOT_CSS)
}

async fn uplot_license() -> Response {
    vendored("text/plain; charset=utf-8", UPLOT_LICENSE)
}

async fn not_found(uri: axum::http::Uri) -> ServiceError {
    ServiceError::NotFound(format!("no such endpoint: {}", uri.path()))
}

/// Serves the HTTP face when `http_listen` is configured: binds now (so a
/// bad address fails `serve`), then serves in the background. `reads` (the
/// tokens, their buckets and the live feed) is shared with gRPC.
pub async fn spawn(shared: Shared, reads: crate::query::Reads) -> Result<(), ServeError> {
    let Some(addr) = shared.config.http_listen.clone() else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let access = access::Access::with(reads.tokens, &shared.config, local.ip().is_loopback())
        .map_err(|message| {
            ServeError::Config(ConfigError::Parse {
                path: shared.data_dir.join(crate::config::FILE),
                message,
            })
        })?;
    let app = App {
        feed: reads.feed,
        access: Arc::new(access),
        shared,
    };
    tracing::info!(addr = %local, "HTTP API and dashboard serving");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(app)).await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    Ok(())
}

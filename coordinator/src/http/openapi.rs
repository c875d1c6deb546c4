//! The OpenAPI 3.1 document of the read API, generated from the handlers'
//! `#[utoipa::path]` attributes and the view types, so it cannot drift from
//! the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{aggregation, api, metrics, stream, views};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "read_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A read token whose SHA-256 (hex) is listed in the coordinator's \
                         read_tokens; none needed on a loopback listener without read_tokens.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vantage read API",
        version = "1",
        description = "Read-only access to a Vantage coordinator: the fleet, campaigns, \
                       signed results, verdicts, aggregations and a live event stream. \
                       Errors are JSON objects {\"error\": \"<sentence>\", \"code\": \"<name>\"} \
                       where code is the gRPC status name in snake case (invalid_argument, \
                       unauthenticated, not_found, resource_exhausted, internal); \
                       times are Unix microseconds."
    ),
    paths(
        api::agents,
        api::campaigns,
        api::campaign,
        api::results,
        api::verdicts,
        aggregation::aggregation,
        stream::stream,
        metrics::metrics,
    ),
    components(schemas(
        views::AgentList,
        views::CampaignList,
        views::CampaignDetail,
        views::ResultPage,
        views::VerdictList,
        aggregation::Aggregation,
    )),
    modifiers(&BearerAuth),
    security(("read_token" = [])),
    tags(
        (name = "fleet", description = "Enrolled agents"),
        (name = "campaigns", description = "Campaigns and their runs"),
        (name = "results", description = "Stored, verified results"),
        (name = "verdicts", description = "Inside results judged against controls"),
        (name = "operations", description = "Monitoring"),
    )
)]
struct ApiDoc;

/// The document.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document (OpenAPI 3.1).
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_endpoint() {
        let doc = serde_json::to_value(super::document()).unwrap();
        for p in [
            "/api/v1/agents",
            "/api/v1/campaigns",
            "/api/v1/campaigns/{id}",
            "/api/v1/results",
            "/api/v1/verdicts",
            "/api/v1/aggregation",
            "/api/v1/stream",
            "/metrics",
        ] {
            assert!(doc["paths"][p]["get"].is_object(), "{p} missing");
        }
        assert!(doc["components"]["schemas"]["ResultView"].is_object());
    }
}

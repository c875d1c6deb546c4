//! The OpenAPI 3.1 document of the read API, generated from the handlers'
//! `#[utoipa::path]` attributes and the view types, then completed from the
//! server's own tables so it says what the server checks:
//!
//! - every query and path parameter gets its schema by name from
//!   [`param_schema`] (UUIDs, RFC 3339 times, the probe kinds, statuses and
//!   axes the read layer accepts, `limit`'s bounds, the cursor's form);
//! - every operation gets the error answers every handler can give (400,
//!   401, 429, 500, 503), each an [`ErrorBody`](super::ErrorBody) (a
//!   handler lists its own 404 with the same body);
//! - a read token is a bearer security scheme, optional, because a loopback
//!   listener without `read_tokens` serves anyone.
//!
//! Schemathesis checks the document against a running coordinator in the
//! e2e test `openapi`.

use axum::Json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Parameter;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AnyOfBuilder, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{KnownFormat, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{aggregation, api, metrics, stream, views, ErrorBody};
use crate::query::{fields, AXES, KINDS, MAX_LIMIT, STATUSES};

/// A UUID as the server accepts it (hyphenated, either case).
const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

fn string() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .min_length(Some(1))
}

fn integer(min: u64, max: u64) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
            .build(),
    )
}

fn one_of(values: &[&str]) -> Schema {
    Schema::Object(string().enum_values(Some(values.iter().copied())).build())
}

/// The schema of a parameter, by name: one table for every operation, from
/// the same constants the read layer checks against. `None`: not a
/// parameter of this API.
pub(crate) fn param_schema(name: &str) -> Option<Schema> {
    Some(match name {
        // A result event's id (its commit sequence number), or a result
        // id from before the sequence (resumes live).
        "last_event_id" | "Last-Event-ID" => Schema::AnyOf(
            AnyOfBuilder::new()
                .item(string().pattern(Some("^[0-9]{1,19}$")).build())
                .item(
                    string()
                        .format(Some(SchemaFormat::Custom("uuid".into())))
                        .pattern(Some(UUID))
                        .build(),
                )
                .build(),
        ),
        "after_seq" => integer(0, u64::MAX),
        "id" | "campaign" | "agent" => Schema::Object(
            string()
                .format(Some(SchemaFormat::Custom("uuid".into())))
                .pattern(Some(UUID))
                .build(),
        ),
        // RFC 3339 (any offset, any fraction, kept to the microsecond), a
        // date (midnight UTC), or Unix microseconds.
        "since" | "until" => Schema::AnyOf(
            AnyOfBuilder::new()
                .item(
                    string()
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                        .build(),
                )
                .item(
                    string()
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
                        .build(),
                )
                .item(string().pattern(Some(fields::MICROS_PATTERN)).build())
                .build(),
        ),
        "country" => Schema::Object(string().pattern(Some("^[A-Za-z]{2}$")).build()),
        "asn" => integer(0, u32::MAX as u64),
        "limit" => integer(1, MAX_LIMIT as u64),
        "kind" => one_of(KINDS),
        "status" => one_of(STATUSES),
        "axis_x" | "axis_y" => one_of(AXES),
        "format" => one_of(&["json", "csv"]),
        "backend" => one_of(&["sled", "clickhouse"]),
        "change" => one_of(crate::changes::KINDS),
        "cursor" => Schema::Object(string().pattern(Some(fields::CURSOR_PATTERN)).build()),
        "target" | "mechanism" | "failure" => Schema::Object(string().build()),
        _ => return None,
    })
}

/// An error answer: an [`ErrorBody`], with the headers that go with it.
fn error_response(
    description: &str,
    header: Option<(&str, &str)>,
) -> RefOr<utoipa::openapi::Response> {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if let Some((name, what)) = header {
        r = r.header(
            name,
            HeaderBuilder::new()
                .schema(string().build())
                .description(Some(what))
                .build(),
        );
    }
    RefOr::T(r.build())
}

/// The answers every guarded handler can give besides its own: status and
/// when.
const ERRORS: [(&str, &str); 5] = [
    (
        "400",
        "a parameter is unknown, repeated, empty or malformed (the sentence names it)",
    ),
    ("401", "a read token is needed, or the one given is unknown"),
    (
        "429",
        "the caller's bucket of http_rate_per_minute requests is empty",
    ),
    ("500", "the store failed"),
    ("503", "the coordinator cannot serve this now; retry"),
];

/// The header an error answer carries: its name and what it says.
fn error_header(status: &str) -> Option<(&'static str, &'static str)> {
    match status {
        "401" => Some(("WWW-Authenticate", "Bearer realm=\"vantage\"")),
        "429" => Some(("Retry-After", "seconds until a request is allowed again")),
        _ => None,
    }
}

/// Completes the generated document (see the module comment).
struct Complete;

impl Modify for Complete {
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
        for item in doc.paths.paths.values_mut() {
            let Some(op) = item.get.as_mut() else {
                continue;
            };
            for p in op.parameters.iter_mut().flatten() {
                set_schema(p);
            }
            for (code, what) in ERRORS {
                op.responses
                    .responses
                    .entry(code.to_string())
                    .or_insert_with(|| error_response(what, error_header(code)));
            }
        }
    }
}

fn set_schema(p: &mut Parameter) {
    if let Some(s) = param_schema(&p.name) {
        p.schema = Some(RefOr::T(s));
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
                       unauthenticated, not_found, resource_exhausted, internal, unavailable). \
                       Times in answers are Unix microseconds; time parameters take RFC 3339, \
                       a date or Unix microseconds. A parameter given must not be empty."
    ),
    paths(
        api::agents,
        api::campaigns,
        api::campaign,
        api::results,
        api::verdicts,
        api::changes,
        aggregation::aggregation,
        stream::stream,
        api::sink,
        metrics::metrics,
    ),
    components(schemas(
        views::AgentList,
        views::CampaignList,
        views::CampaignDetail,
        views::ResultPage,
        views::VerdictList,
        api::ChangeList,
        aggregation::Aggregation,
        api::SinkView,
        ErrorBody,
    )),
    modifiers(&Complete),
    security(("read_token" = []), ()),
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
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::to_value(super::document()).unwrap()
    }

    #[test]
    fn document_lists_every_endpoint_with_its_errors() {
        let doc = doc();
        for p in [
            "/api/v1/agents",
            "/api/v1/campaigns",
            "/api/v1/campaigns/{id}",
            "/api/v1/results",
            "/api/v1/verdicts",
            "/api/v1/aggregation",
            "/api/v1/stream",
            "/api/v1/sink",
            "/metrics",
        ] {
            let op = &doc["paths"][p]["get"];
            assert!(op.is_object(), "{p} missing");
            for code in ["200", "400", "401", "429", "500", "503"] {
                assert!(op["responses"][code].is_object(), "{p}: no {code}");
            }
        }
        assert!(doc["components"]["schemas"]["ResultView"].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
        let sink = &doc["components"]["schemas"]["SinkView"]["properties"];
        for field in ["configured", "lag_results", "lag_seconds", "last_error"] {
            assert!(sink[field].is_object(), "SinkView.{field}");
        }
        // The verdict row is the protobuf message itself, described by its
        // own comments.
        let verdict = &doc["components"]["schemas"]["VerdictEntry"];
        assert_eq!(verdict["properties"]["dispatch_at_us"]["type"], "integer");
        assert!(verdict["properties"]["status"]["description"]
            .as_str()
            .unwrap()
            .contains("blocked"));
        for p in [
            "/api/v1/campaigns/{id}",
            "/api/v1/verdicts",
            "/api/v1/aggregation",
        ] {
            let missing = &doc["paths"][p]["get"]["responses"]["404"];
            assert_eq!(
                missing["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{p}"
            );
        }
    }

    /// Every parameter has its schema from the table, and a read token is
    /// optional (anonymous loopback mode), never a required header.
    #[test]
    fn parameters_are_typed_and_the_token_is_optional() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for p in item["get"]["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                assert!(super::param_schema(name).is_some(), "{path}: {name}");
                assert_ne!(name.to_ascii_lowercase(), "authorization", "{path}");
            }
        }
        let id = &doc["paths"]["/api/v1/campaigns/{id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(id["format"], "uuid");
        let security = doc["security"].as_array().unwrap();
        assert!(security.iter().any(|s| s.get("read_token").is_some()));
        assert!(security.iter().any(|s| s.as_object().unwrap().is_empty()));
    }
}

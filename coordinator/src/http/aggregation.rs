//! `/api/v1/aggregation`: verdict counts (ok, blocked, down, inconclusive)
//! over one or two axes, as JSON or CSV, in the spirit of OONI's
//! `/api/v1/aggregation`. Accepts the verdict filters too. The counting is
//! `crate::query::aggregate`, shared with gRPC.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::params::{Params, RawQuery};
use super::{blocking, App, ErrorBody};
use crate::errors::ServiceError;
use crate::query::{axes, backend, Cell, VerdictFilter, VERDICT_FILTERS};

#[derive(Serialize, ToSchema)]
pub(crate) struct Aggregation {
    pub axis_x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub axis_y: Option<String>,
    pub result: Vec<Cell>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with a header naming the axes.
pub(crate) fn to_csv(a: &Aggregation) -> String {
    let mut out = csv_field(&a.axis_x);
    if let Some(y) = &a.axis_y {
        out.push(',');
        out.push_str(&csv_field(y));
    }
    out.push_str(",ok_count,blocked_count,down_count,inconclusive_count,measurement_count\n");
    for c in &a.result {
        out.push_str(&csv_field(&c.x));
        if let Some(y) = &c.y {
            out.push(',');
            out.push_str(&csv_field(y));
        }
        let n = &c.counts;
        out.push_str(&format!(
            ",{},{},{},{},{}\n",
            n.ok_count, n.blocked_count, n.down_count, n.inconclusive_count, n.measurement_count
        ));
    }
    out
}

/// Verdict counts by one or two axes.
#[utoipa::path(get, path = "/api/v1/aggregation", tag = "verdicts",
    params(
        ("axis_x" = String, Query, description = "the first axis"),
        ("axis_y" = Option<String>, Query, description = "a second axis, not axis_x"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
        ("backend" = Option<String>, Query, description = "sled (default) or clickhouse: the verdict table the ClickHouse sink fills (needs [sink.clickhouse]); the same cells either way"),
        VerdictFilter,
    ),
    responses((status = 200, description = "JSON, or CSV with format=csv (a header naming the axes, then one line per cell)",
            content((Aggregation = "application/json"), (String = "text/csv"))),
        (status = 404, body = ErrorBody, description = "no such campaign")))]
pub(crate) async fn aggregation(
    State(app): State<App>,
    q: RawQuery,
) -> Result<Response, ServiceError> {
    let mut known = VERDICT_FILTERS.to_vec();
    known.extend(["axis_x", "axis_y", "format", "backend"]);
    let p = Params::parse(q, &known)?;
    let (x, y) = axes(&p)?;
    let csv = match p.get("format") {
        None | Some("json") => false,
        Some("csv") => true,
        Some(f) => {
            return Err(ServiceError::invalid(format!(
                "format must be json or csv, not {f:?}"
            )))
        }
    };
    let f = VerdictFilter::parse(&p)?;
    let from = backend(&p)?;
    let shared = app.shared.clone();
    let a = blocking(move || {
        Ok(Aggregation {
            result: crate::query::aggregation(&shared, &f, &x, y.as_deref(), from)?,
            axis_x: x,
            axis_y: y,
        })
    })
    .await?;
    Ok(if csv {
        (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&a),
        )
            .into_response()
    } else {
        axum::Json(a).into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::aggregate;
    use crate::query::views::VerdictEntry;

    fn v(country: &str, mech: &str, status: &str) -> VerdictEntry {
        VerdictEntry {
            dispatch_at_us: 86_400_000_000,
            country: country.into(),
            asn: 1,
            status: status.into(),
            mechanism: mech.into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_by_two_axes_and_csv_agrees() {
        let vs = vec![
            v("CN", "tcp.reset", "blocked"),
            v("CN", "tcp.reset", "blocked"),
            v("CN", "", "ok"),
            v("DE", "", "down"),
            v("DE", "", "inconclusive"),
        ];
        let cells = aggregate(&vs, "country", Some("mechanism"));
        assert_eq!(cells.len(), 3);
        assert_eq!(
            (cells[0].x.as_str(), cells[0].y.as_deref()),
            ("CN", Some("none"))
        );
        assert_eq!(cells[0].counts.ok_count, 1);
        assert_eq!(cells[1].counts.blocked_count, 2);
        assert_eq!(cells[2].counts.measurement_count, 2);
        let a = Aggregation {
            axis_x: "country".into(),
            axis_y: Some("day".into()),
            result: aggregate(&vs, "country", Some("day")),
        };
        let csv = to_csv(&a);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "country,day,ok_count,blocked_count,down_count,inconclusive_count,measurement_count"
        );
        assert_eq!(lines[1], "CN,1970-01-02,1,2,0,0,3");
        assert_eq!(lines[2], "DE,1970-01-02,0,0,1,1,2");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}

"""Schemathesis hooks for coordinator/tests/e2e/openapi.rs.

The read API has three rules between parameters that OpenAPI cannot state
(all are in the parameters' descriptions, and the server answers 400 when
they are broken): `since` must not be later than `until`, `axis_y` must
differ from `axis_x`, and `cursor` (id order) and `after_seq` (commit
order) do not go together. A fourth depends on the server's config:
`backend=clickhouse` needs a ClickHouse sink, and the server under test has
none (the e2e test `sink_reads` asks one that has). Generated requests that would break them are mended
here, so a 400 for them is not taken for a schema-valid request refused.
Everything else Schemathesis generates is sent as it is.
"""

import datetime

import schemathesis


def _micros(value):
    """The time parameter as Unix microseconds, or None if it is not one
    (then the server answers 400 for it alone, as the schema says)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    digits = text[1:] if text.startswith("-") else text
    if digits.isascii() and digits.isdigit() and 1 <= len(digits) <= 18:
        return int(text)
    try:
        if len(text) == 10:
            d = datetime.date.fromisoformat(text)
            t = datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.timezone.utc)
        else:
            t = datetime.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
            if t.tzinfo is None:
                return None
    except ValueError:
        return None
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    delta = t - epoch
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@schemathesis.hook
def map_query(context, query):
    if not isinstance(query, dict):
        return query
    since, until = _micros(query.get("since")), _micros(query.get("until"))
    if since is not None and until is not None and since > until:
        query["since"], query["until"] = query["until"], query["since"]
    if "axis_y" in query and query.get("axis_y") == query.get("axis_x"):
        del query["axis_y"]
    if "cursor" in query and "after_seq" in query:
        del query["after_seq"]
    if query.get("backend") == "clickhouse":
        query["backend"] = "sled"
    return query


def _breaks_a_rule(query):
    if not isinstance(query, dict):
        return False
    since, until = _micros(query.get("since")), _micros(query.get("until"))
    if since is not None and until is not None and since > until:
        return True
    if "cursor" in query and "after_seq" in query:
        return True
    if query.get("backend") == "clickhouse":
        return True
    return "axis_y" in query and query.get("axis_y") == query.get("axis_x")


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """The coverage phase builds its requests without `map_query`: there a
    400 for a broken rule above is the server right, not a failure. Every
    other failure is kept."""
    refused_for_a_rule = (
        type(failure).__name__ == "RejectedPositiveData"
        and response.status_code == 400
        and _breaks_a_rule(case.query)
    )
    return not refused_for_a_rule

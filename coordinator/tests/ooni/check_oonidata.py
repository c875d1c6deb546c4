#!/usr/bin/env python3
"""Reads a `vantagectl export --format ooni-jsonl` file with OONI's own data
library (`oonidata`, pinned at 0.3.0 by deploy/scripts/install-test-deps.sh)
and checks that every line loads as the OONI nettest it claims to be, with
OONI's test keys typed as OONI's data formats define them.

    python3 check_oonidata.py FILE [--strict] [--require KIND,KIND,...]

Per line:
  * `load_measurement` returns the nettest's own model (WebConnectivity,
    DNSCheck, Tor, UrlGetter), never the generic fallback that keeps no test
    keys, and raises no validation error;
  * the df-002/005/006/001/008 lists (`queries`, `tcp_connect`,
    `tls_handshakes`, `requests`, `network_events`) came through as lists of
    oonidata's own classes, the same length as in the JSON, and the JSON
    values have the types the specs give (oonidata coerces some, so both
    are checked);
  * web_connectivity's `blocking`/`accessible` are values the spec allows;
  * `test_keys.x_vantage` holds the signed envelope (base64).
With --strict (used by the Rust test, whose measurements are built to be
complete), each kind must also carry its non-empty OONI fields. --require
names Vantage kinds that must each appear at least once.

Prints one line per kind and exits non-zero on any failure.
"""

import argparse
import base64
import json
import re
import sys
from collections import OrderedDict


def import_loader():
    """oonidata's loader, wherever this version keeps it."""
    errors = []
    for mod in ("oonidata.dataformat", "oonidata.dataclient", "oonidata"):
        try:
            m = __import__(mod, fromlist=["load_measurement"])
            return m.load_measurement, m
        except (ImportError, AttributeError) as e:
            errors.append(f"{mod}: {e}")
    sys.exit(
        "oonidata is not importable (pip install oonidata==0.3.0, or "
        "bash deploy/scripts/install-test-deps.sh): " + "; ".join(errors)
    )


load_measurement, _ = import_loader()
from oonidata.models import dataformats as df  # noqa: E402

MODEL = {
    "web_connectivity": "WebConnectivity",
    "dnscheck": "DNSCheck",
    "tor": "Tor",
    "urlgetter": "UrlGetter",
}

BLOCKING = {False, None, "dns", "tcp_ip", "http-failure", "http-diff"}

# Vantage kind -> OONI fields that must be non-empty in --strict mode.
# Paths are relative to test_keys; "*" is every value of a map.
STRICT = {
    "web": ["queries", "tcp_connect", "requests", "network_events"],
    "dns": ["lookups.*.queries", "lookups.*.network_events"],
    "dns_injection": ["queries", "network_events"],
    "tcp": ["tcp_connect", "network_events"],
    "tls": ["tls_handshakes", "tcp_connect", "network_events"],
    "http": ["requests", "tcp_connect", "tls_handshakes", "network_events"],
    "quic": ["quic_handshakes", "network_events"],
    "openvpn": ["network_events"],
    "tor": ["targets.*.tcp_connect", "targets.*.tls_handshakes", "targets.*.network_events"],
    "encrypted": ["tcp_connect", "network_events"],
    "wireguard": ["network_events"],
    "app_store": ["tls_handshakes", "network_events"],
}

NUM = (int, float)


class Bad(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def opt(v, types):
    return v is None or isinstance(v, types)


def check_query(q, where):
    need(isinstance(q.get("hostname"), str), f"{where}.hostname is not a string")
    need(isinstance(q.get("query_type"), str), f"{where}.query_type is not a string")
    need(opt(q.get("failure"), str), f"{where}.failure is not string|null")
    need(opt(q.get("rcode"), int), f"{where}.rcode is not int|null")
    need(opt(q.get("t"), NUM) and opt(q.get("t0"), NUM), f"{where}.t/t0 not numbers")
    answers = q.get("answers")
    need(opt(answers, list), f"{where}.answers is not a list")
    for j, a in enumerate(answers or []):
        need(isinstance(a.get("answer_type"), str), f"{where}.answers[{j}].answer_type")
        need(opt(a.get("ttl"), int), f"{where}.answers[{j}].ttl is not int|null")
        if a.get("answer_type") == "A":
            need(isinstance(a.get("ipv4"), str), f"{where}.answers[{j}] A without ipv4")
        if a.get("answer_type") == "AAAA":
            need(isinstance(a.get("ipv6"), str), f"{where}.answers[{j}] AAAA without ipv6")


def check_tcp(c, where):
    need(isinstance(c.get("ip"), str), f"{where}.ip is not a string")
    need(isinstance(c.get("port"), int), f"{where}.port is not an int")
    st = c.get("status")
    need(isinstance(st, dict), f"{where}.status is not an object")
    need(isinstance(st.get("success"), bool), f"{where}.status.success is not a bool")
    need(opt(st.get("failure"), str), f"{where}.status.failure is not string|null")
    need(st["success"] == (st.get("failure") is None), f"{where}: success disagrees with failure")
    need(opt(c.get("t"), NUM), f"{where}.t is not a number")


def check_tls(h, where):
    need(opt(h.get("address"), str), f"{where}.address is not string|null")
    need(opt(h.get("failure"), str), f"{where}.failure is not string|null")
    need(isinstance(h.get("no_tls_verify"), bool), f"{where}.no_tls_verify is not a bool")
    pc = h.get("peer_certificates")
    need(pc is None or (isinstance(pc, list) and all(isinstance(x, dict) for x in pc)),
         f"{where}.peer_certificates is not null or a list of BinaryData")
    for k in ("cipher_suite", "tls_version", "negotiated_protocol", "server_name"):
        need(opt(h.get(k), str), f"{where}.{k} is not a string")
    need(opt(h.get("t"), NUM), f"{where}.t is not a number")


def check_request(r, where):
    need(opt(r.get("failure"), str), f"{where}.failure is not string|null")
    req = r.get("request")
    need(isinstance(req, dict) and isinstance(req.get("url"), str), f"{where}.request.url")
    resp = r.get("response")
    need(opt(resp, dict), f"{where}.response is not an object|null")
    if resp is not None:
        need(opt(resp.get("code"), int), f"{where}.response.code is not an int")
        hl = resp.get("headers_list") or []
        need(isinstance(hl, list) and all(isinstance(p, list) and len(p) == 2 for p in hl),
             f"{where}.response.headers_list is not a list of pairs")
        need(opt(resp.get("headers"), dict), f"{where}.response.headers is not an object")
        need(opt(resp.get("body_is_truncated"), bool), f"{where}.response.body_is_truncated")
    need(r.get("failure") is not None or resp is not None, f"{where}: neither response nor failure")


def check_event(e, where):
    need(isinstance(e.get("operation"), str), f"{where}.operation is not a string")
    need(isinstance(e.get("t"), NUM), f"{where}.t is not a number")
    need(opt(e.get("failure"), str), f"{where}.failure is not string|null")
    need(opt(e.get("address"), str), f"{where}.address is not string|null")


LISTS = [
    ("queries", df.DNSQuery, check_query),
    ("tcp_connect", df.TCPConnect, check_tcp),
    ("tls_handshakes", df.TLSHandshake, check_tls),
    ("requests", df.HTTPTransaction, check_request),
    ("network_events", df.NetworkEvent, check_event),
]


def check_generic(raw, loaded, where):
    """The df lists of one urlgetter-shaped object, raw and as loaded."""
    for key, cls, check in LISTS:
        rv = raw.get(key)
        need(opt(rv, list), f"{where}.{key} is not a list")
        lv = getattr(loaded, key, None)
        if rv is None:
            continue
        need(isinstance(lv, list), f"{where}.{key} did not come through oonidata (got {lv!r:.60})")
        need(len(lv) == len(rv), f"{where}.{key}: {len(rv)} in JSON, {len(lv)} loaded")
        for i, (r, l) in enumerate(zip(rv, lv)):
            need(isinstance(l, cls), f"{where}.{key}[{i}] loaded as {type(l).__name__}")
            check(r, f"{where}.{key}[{i}]")
    # QUIC handshakes use the TLS handshake format (oonidata 0.3.0 does not
    # model them on urlgetter; check the JSON).
    for i, h in enumerate(raw.get("quic_handshakes") or []):
        check_tls(h, f"{where}.quic_handshakes[{i}]")
    for i, q in enumerate(raw.get("x_dns_duplicate_responses") or []):
        check_query(q, f"{where}.x_dns_duplicate_responses[{i}]")
    need(opt(raw.get("failure"), str), f"{where}.failure is not string|null")


def walk(obj, path):
    """Values at a dotted path; '*' fans out over a map's values."""
    vals = [obj]
    for part in path.split("."):
        nxt = []
        for v in vals:
            if not isinstance(v, dict):
                continue
            if part == "*":
                nxt.extend(v.values())
            elif part in v:
                nxt.append(v[part])
        vals = nxt
    return vals


def check_line(msmt):
    test_name = msmt.get("test_name")
    tk = msmt.get("test_keys")
    need(isinstance(tk, dict), "test_keys is not an object")
    kind = (msmt.get("annotations") or {}).get("vantage_kind") or (tk.get("x_vantage") or {}).get("kind")
    need(isinstance(kind, str), "no vantage kind in annotations or test_keys.x_vantage")
    need(test_name in MODEL, f"test_name {test_name!r} has no oonidata model with test keys")
    try:
        loaded = load_measurement(msmt=msmt)
    except Exception as e:  # oonidata raises mashumaro's errors
        raise Bad(f"oonidata rejected it: {type(e).__name__}: {e}")
    need(type(loaded).__name__ == MODEL[test_name],
         f"loaded as {type(loaded).__name__}, not {MODEL[test_name]}")
    need(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", loaded.measurement_start_time or ""),
         "measurement_start_time is not OONI's form")
    need(re.fullmatch(r"[A-Z]{2}", loaded.probe_cc or ""), "probe_cc is not two letters")
    need(re.fullmatch(r"AS\d+", loaded.probe_asn or ""), "probe_asn is not ASn")
    need(isinstance(msmt.get("test_runtime"), NUM), "test_runtime is not a number")
    need(all(isinstance(v, str) for v in (msmt.get("annotations") or {}).values()),
         "annotations are not all strings")
    x = tk.get("x_vantage") or {}
    env = x.get("envelope") or {}
    try:
        need(len(base64.b64decode(env.get("signature_b64", ""), validate=True)) == 64,
             "x_vantage.envelope.signature_b64 is not an Ed25519 signature")
        need(len(base64.b64decode(env.get("measurement_b64", ""), validate=True)) > 0,
             "x_vantage.envelope.measurement_b64 is empty")
    except ValueError as e:
        raise Bad(f"x_vantage.envelope is not base64: {e}")
    keys = loaded.test_keys

    if test_name == "web_connectivity":
        check_generic(tk, keys, "test_keys")
        need(keys.blocking in BLOCKING, f"blocking {keys.blocking!r} is not OONI's")
        need(opt(keys.accessible, bool), "accessible is not bool|null")
        need(not (keys.accessible is True and keys.blocking not in (False,)),
             "accessible without blocking=false")
        need(msmt.get("input", "").startswith(("http://", "https://")), "input is not the URL")
    elif test_name == "dnscheck":
        need(isinstance(keys.lookups, dict) and keys.lookups, "lookups did not come through")
        for name, lk in keys.lookups.items():
            check_generic(tk["lookups"][name], lk, f"test_keys.lookups[{name!r}]")
        need(isinstance(tk.get("domain"), str), "domain is not a string")
    elif test_name == "tor":
        need(isinstance(keys.targets, dict), "targets did not come through")
        for name, t in keys.targets.items():
            raw = tk["targets"][name]
            need(isinstance(t.target_address, str) and isinstance(t.target_protocol, str),
                 f"targets[{name!r}] lacks its address/protocol")
            check_generic(raw, t, f"test_keys.targets[{name!r}]")
        for k in ("or_port_total", "or_port_accessible"):
            need(isinstance(tk.get(k), int), f"{k} is not an int")
    else:
        check_generic(tk, keys, "test_keys")
        need(opt(tk.get("failed_operation"), str), "failed_operation is not string|null")
    return kind


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--require", default="")
    a = ap.parse_args()

    stats = OrderedDict()
    failures = []
    with open(a.file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            kind, test_name = "?", "?"
            try:
                msmt = json.loads(line)
                test_name = msmt.get("test_name", "?")
                kind = (msmt.get("annotations") or {}).get("vantage_kind", "?")
                if (msmt.get("annotations") or {}).get("vantage_refused") == "true":
                    kind += " (refused)"
                check_line(msmt)
                if a.strict:
                    for path in STRICT.get(kind, []):
                        vals = walk(msmt["test_keys"], path)
                        need(vals and all(isinstance(v, list) and v for v in vals),
                             f"--strict: {kind} has no {path}")
                ok = True
            except (Bad, ValueError, KeyError, TypeError, AttributeError) as e:
                ok = False
                failures.append(f"line {n} ({kind}/{test_name}): {e}")
            s = stats.setdefault((kind, test_name), [0, 0])
            s[0 if ok else 1] += 1

    for (kind, test_name), (good, bad) in stats.items():
        print(f"{kind:<14} as {test_name:<17} loaded with OONI's fields: {good}, failed: {bad}")
    missing = [k for k in a.require.split(",") if k and not any(k == s[0] for s in stats)]
    for k in missing:
        failures.append(f"kind {k}: no line in {a.file}")
    for msg in failures:
        print("FAIL " + msg, file=sys.stderr)
    total = sum(g + b for g, b in stats.values())
    good = sum(g for g, _ in stats.values())
    try:
        from oonidata.__about__ import VERSION as version
    except ImportError:
        version = "?"
    print(f"oonidata {version}: "
          f"{good} of {total} lines loaded with OONI's fields")
    if total == 0:
        print("FAIL no measurements in the file", file=sys.stderr)
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

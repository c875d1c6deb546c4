#!/usr/bin/env bash
# The one command that installs what the tests need and runs every test:
# formatting, lints, unit tests, end-to-end tests with real processes, and the
# network-namespace lab tests (root). Set VANTAGE_SKIP_LAB=1 to skip the lab
# tests explicitly; they are then counted and reported, never silently passed.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "${VANTAGE_SKIP_LAB:-0}" != "1" ]; then
  bash deploy/scripts/install-test-deps.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== one TLS crypto provider (ring) in the dependency graph"
if cargo tree --workspace --locked -e normal,build -i aws-lc-rs >/dev/null 2>&1; then
  echo "error: aws-lc-rs is in the dependency graph next to ring; tonic's server would panic" >&2
  cargo tree --workspace -e normal,build -i aws-lc-rs >&2 || true
  exit 1
fi
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build binaries (the end-to-end tests run them)"
cargo build --workspace --bins --locked
# The static agents, the static coordinator of the container images and the
# Debian packages are release builds that only the package tests (e2e
# `deploy::`, `cross::`) need. They are built in the background at the
# lowest CPU priority while most other tests run: those mostly wait on
# sockets and timers, and keep the CPU they need. The tests that start
# ClickHouse clusters (named `clickhouse_*`, and e2e `sink_reads::`) run
# after the builds, on a quiet machine: a loaded CI run saw a ClickHouse
# node take minutes to start.
pkg_log=$(mktemp)
(
  set -e
  echo "== static agents for x86_64, arm64, armv7 (the arm packages hold them; e2e test cross runs them)"
  # Only VANTAGE_SKIP_LAB=1 may go on without the cross toolchain: the arm
  # packages are then not built, and their tests and the cross test print
  # SKIPPED.
  if [ "${VANTAGE_SKIP_LAB:-0}" = "1" ] && ! bash deploy/scripts/build-cross.sh --check; then
    echo "cross toolchain missing: amd64 packages only (VANTAGE_SKIP_LAB=1)"
    export VANTAGE_DEB_CROSS=0
  else
    nice -n 19 bash deploy/scripts/build-cross.sh
    echo "== static coordinator and vantagectl for x86_64 (the container images hold them; e2e test deploy::container_image_*)"
    nice -n 19 bash deploy/scripts/build-cross.sh --coordinator
  fi
  echo "== Debian packages (the deploy tests check them file by file and install them)"
  if command -v cargo-deb >/dev/null 2>&1 || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb" ]; then
    nice -n 19 bash deploy/scripts/build-debs.sh
  elif [ "${VANTAGE_SKIP_LAB:-0}" = "1" ]; then
    echo "cargo-deb missing: the package test will be skipped (VANTAGE_SKIP_LAB=1)"
  else
    echo "error: cargo-deb is missing (deploy/scripts/install-test-deps.sh installs it)" >&2
    exit 1
  fi
) >"$pkg_log" 2>&1 &
pkg_pid=$!
started=$SECONDS

log=$(mktemp)
echo "== cargo test (all but the package and ClickHouse tests; the packages build meanwhile)"
set +e
cargo test --workspace --locked --no-fail-fast \
  -- --skip deploy:: --skip cross:: --skip sink_reads:: --skip clickhouse_ 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
echo "== waiting for the static agents and the packages ($((SECONDS - started)) s since they started)"
wait "$pkg_pid"
pkg_rc=$?
cat "$pkg_log"
rm -f "$pkg_log"
if [ "$pkg_rc" -ne 0 ]; then
  echo "error: building the static agents or the packages failed (exit $pkg_rc; its output is above)" >&2
  exit "$pkg_rc"
fi
# Whole-workspace runs with name filters, not `-p`: selecting packages
# unifies features differently and would rebuild much of the tree.
echo "== cargo test: the package and ClickHouse tests (deploy::, cross::, sink_reads::, clickhouse_*)"
cargo test --workspace --locked --no-fail-fast -- deploy:: cross:: sink_reads:: clickhouse_ 2>&1 | tee -a "$log"
rc2=${PIPESTATUS[0]}
set -e
[ "$rc" -ne 0 ] || rc=$rc2
echo "== whole run: $((SECONDS / 60)) min $((SECONDS % 60)) s"
skipped=$(grep -c 'SKIPPED (VANTAGE_SKIP_LAB=1)' "$log" || true)
if [ "$skipped" -gt 0 ]; then
  echo "== lab tests skipped because VANTAGE_SKIP_LAB=1: $skipped"
fi
rm -f "$log"

exit "$rc"

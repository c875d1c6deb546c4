#!/usr/bin/env bash
# The Vantage demo, as root on Debian: installs the lab's Debian packages if
# missing, builds the release binaries, then `vantage-lab demo` builds the
# censorship lab in network namespaces (198.19.0.0/16 only, no default route
# anywhere, nothing leaves the machine), starts a coordinator with its
# embedded sled store, enrolls an inside agent behind the censoring firewall
# and a control agent outside it, runs one campaign per censorship condition
# (51: the design's fourteen, WireGuard, 34 web conditions of OONI's QA
# matrix and an app removed from one storefront of the lab's app store),
# and prints the verdict table. From a terminal it then
# serves the dashboard until Ctrl-C; the lab is torn down on exit.
#
#   bash deploy/demo.sh            # build, run, print, serve (terminal), tear down
#   bash deploy/demo.sh --keep     # leave the lab and processes up to explore
#   bash deploy/demo.sh --check    # fail unless every verdict is the expected one
#   bash deploy/demo.sh --bench    # also measure the agent: idle RSS, wake-ups,
#                                  # binary size, and the web probe over 1,000 targets
#   bash deploy/demo.sh --json F   # also write the verdicts and expectations to F
#
# VANTAGE_BIN_DIR=target/debug skips the build and uses those binaries;
# VANTAGE_DEMO_PREFIX names the lab (default vd); VANTAGE_BENCH_TARGETS
# sets the web benchmark's size.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
interactive=1
while [ $# -gt 0 ]; do
  case "$1" in
    --check|--keep) args+=("$1"); interactive=0 ;;
    --bench) args+=(--bench-web "${VANTAGE_BENCH_TARGETS:-1000}"); interactive=0 ;;
    --json) [ $# -ge 2 ] || { echo "--json needs a file name" >&2; exit 2; }
            args+=(--json "$2"); shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the demo builds network namespaces, veth links and iptables rules and" >&2
  echo "starts real servers (nginx, dnsmasq, openvpn, tor) inside them: run it as root." >&2
  exit 1
fi

if [ -z "${VANTAGE_BIN_DIR:-}" ]; then
  echo "== installing the lab's Debian packages (if missing)"
  bash deploy/scripts/install-test-deps.sh
  echo "== building release binaries"
  cargo build --release --locked --workspace --bins
  BIN=$PWD/target/release
else
  BIN=$(cd "$VANTAGE_BIN_DIR" && pwd)
fi

# From a terminal, serve the dashboard until Ctrl-C.
if [ "$interactive" = 1 ] && [ -t 0 ]; then
  args+=(--serve)
fi
exec "$BIN/vantage-lab" demo --prefix "${VANTAGE_DEMO_PREFIX:-vd}" --bin-dir "$BIN" "${args[@]}"

#!/usr/bin/env bash
# The Vantage demo, as root on Debian: builds the binaries, builds a small
# censorship lab in network namespaces (addresses in 198.19.200.0/21 only, no
# default route anywhere, nothing leaves the machine), starts a coordinator
# with its embedded sled store, enrolls an inside agent behind a censoring
# firewall and a control agent outside it, runs a campaign with one target
# per censorship condition, and prints the verdict table.
#
#   bash deploy/demo.sh            # build, run, print, tear down
#   bash deploy/demo.sh --keep     # leave the lab and processes up to explore
#   bash deploy/demo.sh --check    # also assert every expected verdict (tests use this)
#   bash deploy/demo.sh --bench    # also measure the agent: idle RSS, wake-ups,
#                                  # binary size, and the web probe over 1,000 targets
#
# VANTAGE_BIN_DIR=target/debug skips the build and uses those binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CHECK=0
KEEP=0
BENCH=0
for a in "$@"; do
  case "$a" in
    --check) CHECK=1 ;;
    --keep) KEEP=1 ;;
    --bench) BENCH=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option $a (try --help)" >&2; exit 2 ;;
  esac
done

P=${VANTAGE_DEMO_PREFIX:-vd}
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the demo builds network namespaces and needs root" >&2
  exit 1
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -z "${VANTAGE_BIN_DIR:-}" ]; then
  say "installing the lab's Debian packages (if missing)"
  bash deploy/scripts/install-test-deps.sh
  say "building release binaries"
  cargo build --release --locked --workspace --bins
  BIN=$ROOT/target/release
else
  BIN=$(cd "$VANTAGE_BIN_DIR" && pwd)
fi
for t in ip iptables nginx dnsmasq openssl; do
  command -v "$t" >/dev/null 2>&1 || { echo "error: $t is missing (bash deploy/scripts/install-test-deps.sh)" >&2; exit 1; }
done

STATE=$(mktemp -d /tmp/vantage-demo.XXXXXX)
NAMESPACES="in out fw srv core"
ns() { local n=$1; shift; ip netns exec "$P-$n" "$@"; }

teardown() {
  for n in $NAMESPACES; do
    if ip netns pids "$P-$n" >/dev/null 2>&1; then
      for pid in $(ip netns pids "$P-$n" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    fi
  done
  sleep 0.3
  for n in $NAMESPACES; do
    for pid in $(ip netns pids "$P-$n" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$P-$n" 2>/dev/null || true
  done
  ip link del "$P-dash" 2>/dev/null || true
}
finish() {
  local rc=$?
  if [ "$KEEP" = 1 ] && [ "$rc" = 0 ]; then
    echo
    echo "Lab left up (--keep). State: $STATE"
    echo "  ip netns exec $P-core $BIN/vantagectl --data-dir $STATE/coord agents"
    echo "  dashboard: http://198.19.208.10:9090/ (read token $READ_TOKEN)"
    echo "  tear down: kill the lab's processes, then: for n in $NAMESPACES; do ip netns del $P-\$n; done"
    return
  fi
  teardown
  if [ "$rc" != 0 ]; then
    echo "demo failed (exit $rc); logs kept in $STATE" >&2
  else
    rm -rf "$STATE"
  fi
}
trap finish EXIT

say "building the lab (namespaces $P-{in,out,fw,srv,core}, 198.19.200.0/21)"
teardown # leftovers of a crashed run
for n in $NAMESPACES; do
  ip netns add "$P-$n"
  ns "$n" ip link set lo up
done
link() { # fw-side-name subnet-octet peer-ns peer-name
  ip link add "$1" netns "$P-fw" type veth peer name "$4" netns "$P-$3"
  ns fw ip addr add "198.19.20$2.1/24" dev "$1"
  ns fw ip link set "$1" up
  ns "$3" ip addr add "198.19.20$2.10/24" dev "$4"
  ns "$3" ip link set "$4" up
  # Only the lab's own range is routed; there is no default route.
  ns "$3" ip route add 198.19.200.0/21 via "198.19.20$2.1"
}
link fw-in 1 in in0
link fw-out 2 out out0
link fw-srv 3 srv srv0
link fw-core 4 core core0
ns fw sysctl -qw net.ipv4.ip_forward=1
for a in 11 20 21 40 53 54; do ns srv ip addr add "198.19.203.$a/24" dev srv0; done

say "starting real servers in $P-srv (nginx, two dnsmasq)"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=lab.example" \
  -addext "subjectAltName=DNS:*.lab.example,DNS:lab.example" \
  -keyout "$STATE/site.key" -out "$STATE/site.pem" >/dev/null 2>&1
mkdir -p "$STATE/www/site" "$STATE/www/news" "$STATE/www/block"
printf '<html><head><title>Clean site</title></head><body>%s</body></html>\n' "$(printf 'content %.0s' $(seq 1 200))" >"$STATE/www/site/index.html"
printf '<html><head><title>Daily News</title></head><body>%s</body></html>\n' "$(printf 'news %.0s' $(seq 1 300))" >"$STATE/www/news/index.html"
printf '<html><head><title>Blocked</title></head><body>Access to this site is restricted.</body></html>\n' >"$STATE/www/block/index.html"
# nginx's workers (www-data) read the pages; mktemp made the state dir 0700.
chmod 755 "$STATE"
chmod -R a+rX "$STATE/www"
cat >"$STATE/nginx.conf" <<NGINX
worker_processes 1;
pid $STATE/nginx.pid;
error_log $STATE/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  server { listen 198.19.203.10:80 default_server; listen 198.19.203.20:443 ssl; listen 198.19.203.21:443 ssl;
           listen 198.19.203.10:443 ssl default_server;
           ssl_certificate $STATE/site.pem; ssl_certificate_key $STATE/site.key;
           root $STATE/www/site; }
  server { listen 198.19.203.40:80; root $STATE/www/news; }
  server { listen 198.19.203.11:80; root $STATE/www/block; }
}
NGINX
ns srv nginx -c "$STATE/nginx.conf" -g 'daemon off;' >"$STATE/nginx.log" 2>&1 &
ns srv dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address=198.19.203.53 --pid-file="$STATE/dns-real.pid" \
  --address=/clean.lab.example/198.19.203.10 --address=/blocked.lab.example/198.19.203.10 \
  --address=/hijacked.lab.example/198.19.203.10 --address=/nx.lab.example/198.19.203.10 \
  --address=/news.lab.example/198.19.203.40 --address=/bench.lab.example/198.19.203.10 \
  >"$STATE/dns-real.log" 2>&1 &
# The censor's resolver: a bogon for hijacked names, NXDOMAIN for others.
ns srv dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
  --listen-address=198.19.203.54 --pid-file="$STATE/dns-censor.pid" \
  --address=/hijacked.lab.example/10.10.10.10 --address=/nx.lab.example/ >"$STATE/dns-censor.log" 2>&1 &

say "censoring traffic from the inside network only ($P-fw)"
fwr() { ns fw iptables "$@"; }
# TLS ClientHello (SNI) or HTTP Host naming blocked.lab.example: reset.
fwr -A FORWARD -i fw-in -p tcp -m multiport --dports 80,443 -m string --algo bm --string blocked.lab.example -j REJECT --reject-with tcp-reset
# Blackhole and refused ports.
fwr -A FORWARD -i fw-in -d 198.19.203.20 -j DROP
fwr -A FORWARD -i fw-in -p tcp --syn -d 198.19.203.21 -j REJECT --reject-with tcp-reset
# DNS queries for listed names go to the censor's resolver (hijack, NXDOMAIN).
for name in '|08|hijacked|03|lab|07|example|' '|02|nx|03|lab|07|example|'; do
  fwr -t nat -A PREROUTING -i fw-in -p udp -d 198.19.203.53 --dport 53 -m string --algo bm --hex-string "$name" -j DNAT --to-destination 198.19.203.54:53
done
# The news site is replaced by a block page.
fwr -t nat -A PREROUTING -i fw-in -p tcp -d 198.19.203.40 --dport 80 -j DNAT --to-destination 198.19.203.11:80
# 198.19.203.30 is assigned to nobody: down for everyone.

for i in $(seq 1 50); do
  ns srv bash -c 'exec 3<>/dev/tcp/198.19.203.10/80' 2>/dev/null && break
  sleep 0.1
done

say "coordinator in $P-core: init and serve (embedded sled store)"
CTL() { ns core "$BIN/vantagectl" --data-dir "$STATE/coord" "$@"; }
ns core "$BIN/vantage-coordinator" init --data-dir "$STATE/coord" --listen 198.19.204.10:7443
# The dashboard: a point-to-point link from this machine to the coordinator's
# namespace only (198.19.208.0/24, outside the lab's routed /21), and a read
# token, which a non-loopback HTTP listener requires.
ip link add "$P-dash" type veth peer name dash0 netns "$P-core"
ip addr add 198.19.208.1/24 dev "$P-dash"
ip link set "$P-dash" up
ns core ip addr add 198.19.208.10/24 dev dash0
ns core ip link set dash0 up
READ_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
READ_HASH=$(printf %s "$READ_TOKEN" | sha256sum | cut -d' ' -f1)
printf 'http_listen = "198.19.208.10:9090"\nread_tokens = ["%s"]\n' "$READ_HASH" >>"$STATE/coord/coordinator.toml"
ns core "$BIN/vantage-coordinator" serve --data-dir "$STATE/coord" >"$STATE/coordinator.log" 2>&1 &
for i in $(seq 1 100); do
  ns core bash -c 'exec 3<>/dev/tcp/198.19.204.10/7443' 2>/dev/null && break
  sleep 0.1
done

say "enrolling an inside agent (CN, behind the firewall) and a control agent (DE, outside)"
TOKEN=$(CTL token create --uses 2 --expires 1h)
AGENT_CONF='version = 1
allow_private_targets = true
[consent]
kinds = ["dns", "tcp", "tls", "http", "web"]
share_network_labels = true'
ns in "$BIN/vantage-agent" enroll --accept-consent --token "$TOKEN" --data-dir "$STATE/inside" --country CN --asn 4134 >/dev/null
ns out "$BIN/vantage-agent" enroll --accept-consent --token "$TOKEN" --data-dir "$STATE/control" --country DE --asn 3320 --tags control >/dev/null
printf '%s\n' "$AGENT_CONF" >"$STATE/inside/agent.toml"
printf '%s\n' "$AGENT_CONF" >"$STATE/control/agent.toml"
ns in "$BIN/vantage-agent" run --data-dir "$STATE/inside" >"$STATE/inside.log" 2>&1 &
ns out "$BIN/vantage-agent" run --data-dir "$STATE/control" >"$STATE/control.log" 2>&1 &
for i in $(seq 1 100); do
  CTL agents >"$STATE/agents.txt"
  [ "$(grep -c ' yes ' "$STATE/agents.txt")" -ge 2 ] && break
  sleep 0.2
done
CTL agents

say "campaign: deploy/campaigns/lab-demo.toml"
ID=$(CTL campaign create -f "$ROOT/deploy/campaigns/lab-demo.toml")
echo "campaign $ID"
CTL campaign status "$ID" --watch
for i in $(seq 1 150); do
  CTL campaign status "$ID" >"$STATE/status.txt"
  head -1 "$STATE/status.txt" | grep -q ' done ' && break
  sleep 0.2
done

say "verdicts (inside vs control, same moment)"
CTL verdicts "$ID"
CTL stats >"$STATE/stats.txt"
head -3 "$STATE/stats.txt"

if [ "$CHECK" = 1 ]; then
  say "checking every expected verdict"
  CTL --output jsonl verdicts "$ID" >"$STATE/verdicts.jsonl"
  fail=0
  expect() { # target-substring status mechanism
    local line
    line=$(grep -F "$1" "$STATE/verdicts.jsonl" | head -1 || true)
    if [ -z "$line" ]; then echo "MISSING  $1"; fail=1; return; fi
    if ! grep -q "\"status\":\"$2\"" <<<"$line" || ! grep -q "\"mechanism\":\"$3\"" <<<"$line"; then
      echo "WRONG    $1: want $2 ${3:-(none)}; got $line"; fail=1; return
    fi
    echo "ok       $1 -> $2 ${3:-}"
  }
  expect 'web http://clean.lab.example/' ok ''
  expect 'tls 198.19.203.10:443 sni=blocked.lab.example' blocked tls.reset
  expect 'http http://blocked.lab.example/' blocked http.reset
  expect 'dns hijacked.lab.example' blocked dns.hijack
  expect 'dns nx.lab.example' blocked dns.nxdomain
  expect 'http http://news.lab.example/' blocked http.blockpage
  expect 'tcp 198.19.203.20:443' blocked tcp.timeout
  expect 'tcp 198.19.203.21:443' blocked tcp.refused
  expect 'tcp 198.19.203.30:443' down ''
  [ "$fail" = 0 ] || { echo "verdict check failed" >&2; exit 1; }
  echo "all 9 verdicts as expected"
fi

if [ "$BENCH" = 1 ]; then
  say "agent benchmark (budgets: idle RSS <= 15 MiB, binary <= 15 MiB, no busy polling, web x1000 <= 30 s)"
  pid=$(pgrep -f "vantage-agent run --data-dir $STATE/inside" | head -1)
  switches() { cat /proc/"$pid"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
  rss_kib=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
  s0=$(switches); sleep 20; s1=$(switches)
  size=$(stat -c %s "$BIN/vantage-agent")
  wake=$(( (s1 - s0) * 3 ))
  echo "agent idle RSS            $((rss_kib / 1024)) MiB ($rss_kib KiB)"
  echo "agent wake-ups (idle)     $wake per minute (context switches of all threads, 20 s window x3)"
  echo "agent binary ($BIN)   $((size / 1048576)) MiB ($size bytes)"
  n=${VANTAGE_BENCH_TARGETS:-1000}
  spec="$STATE/web-bench.toml"
  {
    printf 'version = 1\nname = "web-bench"\nallow_private_targets = true\ndeadline = "120s"\n'
    printf '[inside]\ncountries = ["CN"]\n[control]\ntags = ["control"]\n'
    for i in $(seq 1 "$n"); do
      printf '[[targets]]\nweb = { url = "http://bench.lab.example/p%d", resolver = "198.19.203.53:53" }\n' "$i"
    done
  } >"$spec"
  t0=$(date +%s.%N)
  BID=$(CTL campaign create -f "$spec")
  # Poll the cheap campaign list, not the per-run status (which reads every
  # result), so the measurement does not load the coordinator.
  for i in $(seq 1 1200); do
    CTL campaign list >"$STATE/bench-list.txt"
    grep "$BID" "$STATE/bench-list.txt" | grep -q ' done ' && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  CTL campaign status "$BID" | sed -n '3,4p'
  echo "web probe x $n targets (inside + control agents, default max_concurrency): $(awk "BEGIN {print $t1 - $t0}") s from campaign creation to run complete"
fi

if [ "$CHECK" = 0 ] && [ "$BENCH" = 0 ] && [ "$KEEP" = 0 ] && [ -t 0 ]; then
  say "dashboard"
  echo "  http://198.19.208.10:9090/   read token: $READ_TOKEN"
  echo "  (curl -H 'Authorization: Bearer $READ_TOKEN' http://198.19.208.10:9090/api/v1/verdicts)"
  echo "Press Ctrl-C to stop; the lab is torn down on exit."
  trap 'exit 0' INT TERM
  while sleep 3600; do :; done
fi

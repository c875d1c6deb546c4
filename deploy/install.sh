#!/usr/bin/env bash
# Installs (or removes) a Vantage binary and its hardened systemd unit on a
# Linux machine without Debian packages. On Debian and Ubuntu prefer the
# .deb (deploy/scripts/build-debs.sh).
#
#   sudo deploy/install.sh agent ./vantage-agent
#   sudo deploy/install.sh coordinator ./vantage-coordinator ./vantagectl
#   sudo deploy/install.sh --uninstall agent            # keeps /var/lib/vantage-agent
#   sudo deploy/install.sh --uninstall --purge agent    # and deletes it
#
# Options:
#   --prefix DIR   where binaries go (default /usr/local; the unit's
#                  ExecStart is rewritten to DIR/bin)
#   --root DIR     stage everything under DIR instead of / (for images and
#                  tests): no root needed, systemctl is not called
#   --unit FILE    the unit to install (default: next to this script,
#                  systemd/vantage-<component>.service)
#
# Safe to re-run: unchanged files are left alone; a changed binary or unit
# is replaced and systemd reloaded. Nothing is enabled or started: the agent
# must be enrolled and the coordinator initialised first (the script prints
# the next steps).
set -euo pipefail

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

here=$(cd "$(dirname "$0")" && pwd)
prefix=/usr/local
root=""
unit_src=""
uninstall=0
purge=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
    --unit) [ $# -ge 2 ] || usage; unit_src=$2; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage ;;
    --) shift; args+=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
[ ${#args[@]} -ge 1 ] || usage
component=${args[0]}
case "$component" in
  agent) bins=(vantage-agent) ;;
  coordinator) bins=(vantage-coordinator vantagectl) ;;
  *) die "component must be 'agent' or 'coordinator', not '$component'" ;;
esac
[ "$purge" = 1 ] && [ "$uninstall" = 0 ] && die "--purge only goes with --uninstall"
case "$prefix" in /*) ;; *) die "--prefix must be an absolute path" ;; esac
if [ -n "$root" ]; then
  mkdir -p "$root" || die "cannot create --root $root"
  root=$(cd "$root" && pwd)
  [ "$root" != / ] || root=""
fi

service=vantage-$component.service
unit_dst="$root/etc/systemd/system/$service"
bindir="$root$prefix/bin"
state="$root/var/lib/vantage-$component"

# --- checks ----------------------------------------------------------------
if [ -z "$root" ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (or stage with --root DIR)"
  command -v systemctl >/dev/null 2>&1 || die "systemd is required (systemctl not found); use --root DIR to stage files only"
  [ -d /run/systemd/system ] || die "systemd is not running on this machine (no /run/systemd/system); use --root DIR to stage files only"
fi
systemctl_() {
  if [ -z "$root" ]; then systemctl "$@"; fi
}

# --- uninstall -------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  [ ${#args[@]} -eq 1 ] || die "--uninstall takes only the component"
  if [ -z "$root" ]; then
    systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
  removed=0
  for b in "${bins[@]}"; do
    if [ -e "$bindir/$b" ]; then rm -f "$bindir/$b"; say "removed $bindir/$b"; removed=1; fi
  done
  if [ -e "$unit_dst" ]; then rm -f "$unit_dst"; say "removed $unit_dst"; removed=1; fi
  if [ "$component" = agent ] && [ -d "$root/etc/vantage-agent" ]; then
    rm -f "$root/etc/vantage-agent/agent.toml.example"
    rmdir "$root/etc/vantage-agent" 2>/dev/null || true
  fi
  systemctl_ daemon-reload
  if [ "$purge" = 1 ]; then
    for d in "$state" "$root/var/lib/private/vantage-$component"; do
      if [ -e "$d" ] || [ -L "$d" ]; then rm -rf "$d"; say "purged $d"; removed=1; fi
    done
  elif [ -e "$state" ]; then
    say "kept the data directory $state (--purge deletes it)"
  fi
  [ "$removed" = 1 ] || say "nothing to remove: vantage-$component was not installed"
  exit 0
fi

[ ${#args[@]} -eq $((1 + ${#bins[@]})) ] ||
  die "give the path of each binary: ${bins[*]}"
srcs=("${args[@]:1}")
for i in "${!bins[@]}"; do
  src=${srcs[$i]}
  [ -f "$src" ] || die "binary $src does not exist"
  [ -x "$src" ] || die "binary $src is not executable"
  out=$("$src" --version 2>&1) || die "$src --version failed: $out"
  case "$out" in
    "${bins[$i]} "*) ;;
    *) die "$src does not look like ${bins[$i]} (--version said: $out)" ;;
  esac
done
[ -n "$unit_src" ] || unit_src="$here/systemd/$service"
[ -f "$unit_src" ] || die "unit $unit_src not found (pass --unit FILE)"
grep -q "^ExecStart=/usr/bin/vantage-$component " "$unit_src" ||
  die "$unit_src has no ExecStart=/usr/bin/vantage-$component line"

# --- install ---------------------------------------------------------------
changed=0
# put SRC DST MODE: installs when missing or different.
put() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    say "unchanged $2"
  else
    install -D -m "$3" "$1" "$2.new"
    mv -f "$2.new" "$2"
    say "installed $2"
    changed=1
  fi
}
for i in "${!bins[@]}"; do
  put "${srcs[$i]}" "$bindir/${bins[$i]}" 0755
done
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
sed "s#^ExecStart=/usr/bin/vantage-$component #ExecStart=$prefix/bin/vantage-$component #" \
  "$unit_src" >"$tmp"
put "$tmp" "$unit_dst" 0644
if [ "$component" = agent ] && [ -f "$here/agent.toml.example" ]; then
  put "$here/agent.toml.example" "$root/etc/vantage-agent/agent.toml.example" 0644
fi
if [ "$changed" = 1 ]; then
  systemctl_ daemon-reload
  if [ -z "$root" ] && systemctl is-active --quiet "$service"; then
    systemctl restart "$service"
    say "restarted $service"
  fi
fi

say "vantage-$component $("$bindir/${bins[0]}" --version | awk '{print $2}') is installed"
if [ "$component" = agent ]; then
  cat <<EOT
Next steps:
  sudo $prefix/bin/vantage-agent enroll --token <TOKEN> --data-dir /var/lib/vantage-agent
  sudo systemctl enable --now vantage-agent
  sudo $prefix/bin/vantage-agent status
EOT
else
  cat <<EOT
Next steps:
  sudo $prefix/bin/vantage-coordinator init --data-dir /var/lib/vantage-coordinator --listen 0.0.0.0:7443 --advertise <HOST>:7443
  sudo systemctl enable --now vantage-coordinator
EOT
fi

#!/usr/bin/env bash
# Installs (or removes) a Vantage binary and its hardened systemd unit on a
# Linux machine without Debian packages. On Debian and Ubuntu prefer the
# .deb (deploy/scripts/build-debs.sh).
#
#   sudo deploy/install.sh agent                      # the agent built for this machine
#   sudo deploy/install.sh agent ./vantage-agent
#   sudo deploy/install.sh --deb agent                # dpkg -i the package for this machine
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
#   --arch ARCH    the architecture to install for (amd64, arm64, armhf, or
#                  x86_64, aarch64, armv7l; env VANTAGE_ARCH). Default: this
#                  machine's (dpkg --print-architecture, else uname -m)
#   --dist DIR     where the built agents and packages are (env VANTAGE_DIST;
#                  default: the target directory next to deploy/): with no
#                  binary given, the agent is DIR/<triple>/release/vantage-agent
#                  (deploy/scripts/build-cross.sh); --deb takes the newest
#                  DIR/debian/vantage-<component>_*_ARCH.deb (build-debs.sh)
#   --deb          install the Debian package with dpkg -i instead
#   --dry-run      only print what would be installed (no root needed)
#
# Safe to re-run: unchanged files are left alone; a changed binary or unit
# is replaced and systemd reloaded. Nothing is enabled or started: the agent
# must be enrolled and the coordinator initialised first (the script prints
# the next steps).
set -euo pipefail

usage() {
  sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//' >&2
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
arch=${VANTAGE_ARCH:-}
dist=${VANTAGE_DIST:-${CARGO_TARGET_DIR:-$(dirname "$here")/target}}
deb=0
dry_run=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || usage; prefix=$2; shift 2 ;;
    --root) [ $# -ge 2 ] || usage; root=$2; shift 2 ;;
    --unit) [ $# -ge 2 ] || usage; unit_src=$2; shift 2 ;;
    --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
    --dist) [ $# -ge 2 ] || usage; dist=$2; shift 2 ;;
    --deb) deb=1; shift ;;
    --dry-run) dry_run=1; shift ;;
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

[ "$dry_run" = 1 ] && [ "$uninstall" = 1 ] && die "--dry-run only goes with installing"
[ "$deb" = 1 ] && [ "$uninstall" = 1 ] && die "--deb does not go with --uninstall (use dpkg --remove or --purge)"
[ "$deb" = 1 ] && [ -n "$root" ] && die "--deb does not go with --root (dpkg installs on this machine)"

# --- architecture ----------------------------------------------------------
supported="amd64, arm64, armhf"
# deb_arch NAME: the Debian architecture for a dpkg or uname name.
deb_arch() {
  case "$1" in
    amd64|x86_64) echo amd64 ;;
    arm64|aarch64) echo arm64 ;;
    armhf|armv7*) echo armhf ;;
    *) return 1 ;;
  esac
}
# This machine's architecture as dpkg or uname names it.
machine_arch() {
  local a=""
  if command -v dpkg >/dev/null 2>&1; then
    a=$(dpkg --print-architecture 2>/dev/null) || a=""
  fi
  [ -n "$a" ] || a=$(uname -m)
  echo "$a"
}
# The Rust targets that build-cross.sh builds the agent for, per architecture.
triples() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    armhf) echo armv7-unknown-linux-gnueabihf armv7-unknown-linux-musleabihf ;;
  esac
}
host=$(machine_arch)
host_arch=$(deb_arch "$host") || host_arch=""
# Only needed when nothing else says what to install.
needs_arch=0
if [ "$uninstall" = 0 ] && { [ "$deb" = 1 ] || [ ${#args[@]} -eq 1 ]; }; then needs_arch=1; fi
if [ -n "$arch" ]; then
  given=$arch
  arch=$(deb_arch "$given") ||
    die "unsupported architecture '$given' (--arch/VANTAGE_ARCH); supported: $supported"
elif [ "$needs_arch" = 1 ]; then
  [ -n "$host_arch" ] ||
    die "unsupported architecture '$host' (this machine); supported: $supported"
  arch=$host_arch
fi

service=vantage-$component.service
unit_dst="$root/etc/systemd/system/$service"
bindir="$root$prefix/bin"
state="$root/var/lib/vantage-$component"

# --- the package ------------------------------------------------------------
if [ "$deb" = 1 ]; then
  [ ${#args[@]} -eq 1 ] || die "--deb takes only the component"
  pkg=""
  if [ -d "$dist/debian" ]; then
    pkg=$(find "$dist/debian" -maxdepth 1 -name "vantage-${component}_*_$arch.deb" | sort -V | tail -n 1)
  fi
  if [ -z "$pkg" ]; then
    have=$(find "$dist/debian" -maxdepth 1 -name "vantage-${component}_*.deb" 2>/dev/null |
      sed 's/.*_//; s/\.deb$//' | sort -u | paste -sd ' ' -)
    die "no vantage-${component} package for $arch: no $dist/debian/vantage-${component}_*_$arch.deb (there are: ${have:-none}; deploy/scripts/build-debs.sh builds them, --dist DIR says where they are)"
  fi
  if [ "$dry_run" = 1 ]; then
    say "would install $pkg ($arch) with dpkg -i"
    exit 0
  fi
  [ "$(id -u)" -eq 0 ] || die "run as root to install a package"
  command -v dpkg >/dev/null 2>&1 || die "--deb needs dpkg (this is not a Debian system): install the binary without --deb"
  if [ -n "$host_arch" ] && [ "$arch" != "$host_arch" ]; then
    die "the $arch package does not install on this $host_arch machine"
  fi
  dpkg -i "$pkg"
  say "installed $pkg"
  exit 0
fi

# --- checks ----------------------------------------------------------------
if [ -z "$root" ] && [ "$dry_run" = 0 ]; then
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

if [ "$component" = agent ] && [ ${#args[@]} -eq 1 ]; then
  # No binary given: the static agent built for the architecture.
  picked=""
  for t in $(triples "$arch"); do
    if [ -f "$dist/$t/release/vantage-agent" ]; then picked="$dist/$t/release/vantage-agent"; break; fi
  done
  if [ -z "$picked" ]; then
    want=""
    for t in $(triples "$arch"); do want="${want:+$want or }$dist/$t/release/vantage-agent"; done
    die "no vantage-agent for $arch: $want not found (deploy/scripts/build-cross.sh builds it; --dist DIR says where it is, or give the binary's path)"
  fi
  args+=("$picked")
fi
[ ${#args[@]} -eq $((1 + ${#bins[@]})) ] ||
  die "give the path of each binary: ${bins[*]}"
srcs=("${args[@]:1}")
# A binary for another architecture (staging an image with --root) cannot
# be run here: it is checked to exist, not asked for its version.
foreign=0
if [ -n "$arch" ] && [ "$arch" != "$host_arch" ]; then foreign=1; fi
version=""
for i in "${!bins[@]}"; do
  src=${srcs[$i]}
  [ -f "$src" ] || die "binary $src does not exist"
  [ -x "$src" ] || die "binary $src is not executable"
  [ "$foreign" = 0 ] || continue
  out=$("$src" --version 2>&1) || die "$src --version failed: $out"
  case "$out" in
    "${bins[$i]} "*) ;;
    *) die "$src does not look like ${bins[$i]} (--version said: $out)" ;;
  esac
  [ -n "$version" ] || version=${out#"${bins[$i]} "}
done
[ -n "$unit_src" ] || unit_src="$here/systemd/$service"
[ -f "$unit_src" ] || die "unit $unit_src not found (pass --unit FILE)"
grep -q "^ExecStart=/usr/bin/vantage-$component " "$unit_src" ||
  die "$unit_src has no ExecStart=/usr/bin/vantage-$component line"
if [ "$dry_run" = 1 ]; then
  for i in "${!bins[@]}"; do
    say "would install ${srcs[$i]} as $bindir/${bins[$i]}${arch:+ ($arch)}"
  done
  say "would install $unit_src as $unit_dst"
  exit 0
fi

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

if [ "$foreign" = 1 ]; then
  say "vantage-$component for $arch is installed (not run: this machine is ${host_arch:-$host})"
else
  say "vantage-$component ${version%% *} is installed"
fi
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

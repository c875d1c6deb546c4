#!/usr/bin/env bash
# Installs what the test suite needs: the Debian packages of real servers
# used as probe targets in the network-namespace lab and the tools that build
# it, cargo-deb, OONI's Python data library and Schemathesis (each in a virtual
# environment), the cross compilers, Rust targets and qemu emulators of
# the arm agents (deploy/scripts/build-cross.sh, coordinator/tests/e2e/cross.rs),
# and podman for the container images.
# Safe to re-run; does nothing when everything is present.
set -euo pipefail

PACKAGES=(iproute2 iptables curl nginx-light unbound dnsmasq-base openvpn tor openssl procps systemd dpkg-dev fakeroot bsdutils chromium prometheus clickhouse-server clickhouse-client zookeeper
  # The static arm64/armv7 agents (deploy/scripts/build-cross.sh) and their
  # emulated test (coordinator/tests/e2e/cross.rs).
  file gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static
  # The container images (deploy/Containerfile) and their test, e2e
  # deploy::container_image_*: podman builds and runs them; runc, because
  # crun refuses a host with cgroup v2 controllers beside cgroup v1;
  # ca-certificates is the CA bundle the images hold.
  podman runc netavark ca-certificates)
BINARIES=(ip iptables curl nginx unbound dnsmasq openvpn tor openssl pkill systemd-analyze dpkg-shlibdeps fakeroot script chromium promtool clickhouse-server clickhouse-client /usr/share/zookeeper/bin/zkServer.sh
  file aarch64-linux-gnu-gcc /usr/aarch64-linux-gnu/include/stdint.h arm-linux-gnueabihf-gcc /usr/arm-linux-gnueabihf/include/stdint.h qemu-aarch64-static qemu-arm-static
  podman runc /etc/ssl/certs/ca-certificates.crt)

# Rust's standard library for the cross-built agents (build-cross.sh).
CROSS_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
have_targets=$(rustup target list --installed 2>/dev/null || true)
for t in "${CROSS_TARGETS[@]}"; do
  if ! grep -qx "$t" <<<"$have_targets"; then
    echo "test dependencies: rustup target add $t"
    rustup target add "$t"
  fi
done

# cargo-deb builds the .deb packages (deploy/scripts/build-debs.sh).
if ! command -v cargo-deb >/dev/null 2>&1 && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb" ]; then
  echo "test dependencies: installing cargo-deb"
  cargo install --locked cargo-deb
fi

# Python tools the tests run, each in its own virtual environment instead
# of the system's Python: venv_install NAME DIR PIP-REQUIREMENT CHECK-COMMAND.
venv_install() {
  local name=$1 dir=$2 requirement=$3 check=$4
  if "$dir/bin/python3" -c "$check" >/dev/null 2>&1; then
    return
  fi
  echo "test dependencies: installing $requirement in $dir"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "error: python3 with venv is needed for $name (apt-get install python3-venv, as root)" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/python3" -m pip install -q --disable-pip-version-check "$requirement"
  "$dir/bin/python3" -c "$check"
}

# OONI's data library reads `vantagectl export --format ooni-jsonl` in
# coordinator/tests/ooni_export.rs. It pins old click/cryptography.
OONIDATA_VERSION=0.3.0
venv_install oonidata "${VANTAGE_OONIDATA_VENV:-$HOME/.cache/vantage/oonidata-$OONIDATA_VERSION}" \
  "oonidata==$OONIDATA_VERSION" 'import oonidata.dataclient'

# Schemathesis checks the HTTP API against its OpenAPI document in
# coordinator/tests/e2e/openapi.rs (which runs the venv's `st`).
SCHEMATHESIS_VERSION=4.32
venv_install schemathesis "$HOME/.cache/vantage/schemathesis-$SCHEMATHESIS_VERSION" \
  "schemathesis==$SCHEMATHESIS_VERSION.*" 'import schemathesis'

missing=()
for b in "${BINARIES[@]}"; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || [ -f "$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test dependencies: all present"
  exit 0
fi
echo "test dependencies: missing ${missing[*]}; installing ${PACKAGES[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "error: installing Debian packages needs root (or run with VANTAGE_SKIP_LAB=1 to skip lab tests)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may be running another install: wait for dpkg's lock.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
# Debian starts some of these as services on install; the tests run their own.
for s in nginx unbound tor openvpn prometheus clickhouse-server zookeeper; do
  (systemctl stop "$s" || service "$s" stop) >/dev/null 2>&1 || true
done
echo "test dependencies: installed"

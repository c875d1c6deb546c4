#!/usr/bin/env bash
# Builds static `vantage-agent` binaries for the devices volunteers run
# agents on, from an x86_64 Debian machine:
#
#   bash deploy/scripts/build-cross.sh            # all three targets
#   bash deploy/scripts/build-cross.sh aarch64-unknown-linux-musl
#   bash deploy/scripts/build-cross.sh --coordinator   # + vantage-coordinator, vantagectl
#
# Binaries: target/<triple>/release/vantage-agent (the workspace's release
# profile, thin LTO, stripped, but optimised for size: opt-level "s";
# statically linked: no interpreter, no shared libraries). Measured for
# x86_64 musl on 2026-12-07 (BENCHMARKS.md, "Agent footprint"): opt-level 3
# 9.0 MB, "s" 6.8 MB, "s" with fat LTO and one codegen unit 5.4 MB but
# about twice the build time. A profile without LTO and with 16 codegen
# units was measured earlier: no less CPU time here, 3% larger.
#
#   x86_64-unknown-linux-musl      amd64 PCs and servers
#   aarch64-unknown-linux-musl     arm64: Raspberry Pi 3/4/5 (64-bit OS), Turris MOX/Omnia NG
#   armv7-unknown-linux-gnueabihf  armhf: Raspberry Pi 2/3 (32-bit OS), Turris Omnia, most armv7 routers
#
# armv7 links glibc statically (`+crt-static`) rather than musl: rustup's
# standard library for armv7-unknown-linux-musleabihf cannot be downloaded on
# the machines this project builds on. Since glibc 2.34 the DNS and hosts
# lookups are inside libc, so the static binary resolves names without the
# target's NSS modules. Where that std is available, name the musl triple:
# `build-cross.sh armv7-unknown-linux-musleabihf` works the same way.
#
# What it needs (deploy/scripts/install-test-deps.sh installs all of it):
#   rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf
#   apt-get install gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
#     gcc-arm-linux-gnueabihf libc6-dev-armhf-cross file
# The Debian cross compilers build ring's C and assembly and drive the link;
# Rust's musl targets bring their own musl C library and start files.
#
# `--coordinator` also builds `vantage-coordinator` and `vantagectl`, static
# the same way, by default for x86_64-unknown-linux-musl only: the three
# binaries the container images hold (deploy/Containerfile). They are built
# in a cargo run of their own after the agent's, optimised for speed as the
# host's release build is (the agent for size), and so that the agent's
# features are not unified with the coordinator's: its binary stays the same.
#
# VANTAGE_CROSS_PROFILE picks another cargo profile (default: release).
# `build-cross.sh --check [--coordinator] [TARGET...]` only checks that all
# of it is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=${VANTAGE_CROSS_PROFILE:-release}
check_only=0
coordinator=0
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check_only=1 ;;
    --coordinator) coordinator=1 ;;
    -*) echo "error: unknown option $1 (--check, --coordinator)" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
targets=("$@")
if [ ${#targets[@]} -eq 0 ] && [ "$coordinator" = 1 ]; then
  targets=(x86_64-unknown-linux-musl)
elif [ ${#targets[@]} -eq 0 ]; then
  targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
fi
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

# The Debian (cross) compiler for a Rust target triple, and its packages.
cross_cc() {
  case "$1" in
    x86_64-*) echo x86_64-linux-gnu-gcc ;;
    aarch64-*) echo aarch64-linux-gnu-gcc ;;
    armv7-*hf) echo arm-linux-gnueabihf-gcc ;;
    *) echo "error: no cross compiler known for $1" >&2; return 1 ;;
  esac
}
cross_packages() {
  case "$1" in
    x86_64-*) echo gcc ;;
    aarch64-*) echo gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
    armv7-*hf) echo gcc-arm-linux-gnueabihf libc6-dev-armhf-cross ;;
  esac
}

installed=$(rustup target list --installed 2>/dev/null || true)
for t in "${targets[@]}"; do
  cc=$(cross_cc "$t")
  if ! grep -qx "$t" <<<"$installed"; then
    echo "error: the Rust standard library for $t is missing: rustup target add $t" >&2
    exit 1
  fi
  if ! command -v "$cc" >/dev/null 2>&1; then
    echo "error: $cc is missing: apt-get install $(cross_packages "$t")" >&2
    exit 1
  fi
  # ring's C includes <stdint.h>: the cross C library headers.
  if ! echo '#include <stdint.h>' | "$cc" -E -x c - >/dev/null 2>&1; then
    echo "error: $cc has no C library headers: apt-get install $(cross_packages "$t")" >&2
    exit 1
  fi
done
command -v file >/dev/null 2>&1 || { echo "error: file is missing: apt-get install file" >&2; exit 1; }
[ "$check_only" = 1 ] && exit 0

# What to build: a cargo package and its binaries, one cargo run each.
builds=("vantage-agent vantage-agent")
if [ "$coordinator" = 1 ]; then
  builds+=("vantage-coordinator vantage-coordinator vantagectl")
fi

for t in "${targets[@]}"; do
  cc=$(cross_cc "$t")
  upper=$(tr 'a-z-' 'A-Z_' <<<"$t")
  lower=${t//-/_}
  dir=$profile
  [ "$profile" = dev ] && dir=debug
  for build in "${builds[@]}"; do
    read -r package bins <<<"$build"
    bin_args=()
    for b in $bins; do bin_args+=(--bin "$b"); done
    # The agent is optimised for size (opt-level "s"; VANTAGE_AGENT_OPT_LEVEL
    # overrides); the coordinator keeps the profile's optimisation for speed.
    # Cargo keeps each one's artifacts apart, and the host's release build
    # is not touched: the cross targets have their own directories.
    opt=()
    if [ "$package" = vantage-agent ]; then
      opt=("CARGO_PROFILE_$(tr 'a-z-' 'A-Z_' <<<"$profile")_OPT_LEVEL=${VANTAGE_AGENT_OPT_LEVEL:-s}")
    fi
    echo "== $t: $bins ($profile, CC and linker $cc)"
    start=$(date +%s)
    # Per-target settings in the environment, not in a cargo config file:
    # the host build (build scripts, proc macros) keeps the host's compiler.
    env "CC_$lower=$cc" "AR_$lower=${cc%-gcc}-ar" \
      "CARGO_TARGET_${upper}_LINKER=$cc" \
      "CARGO_TARGET_${upper}_RUSTFLAGS=-C target-feature=+crt-static" \
      "${opt[@]}" \
      cargo build --locked --profile "$profile" --target "$t" -p "$package" "${bin_args[@]}"
    for b in $bins; do
      exe="$target_dir/$t/$dir/$b"
      desc=$(file -b "$exe")
      # `file` says "statically linked", or "static-pie linked" for the
      # position-independent static executables of the musl targets.
      case "$desc" in
        *"dynamically linked"* | *interpreter*)
          echo "error: $exe is not static: $desc" >&2
          exit 1
          ;;
        *"statically linked"* | *"static-pie linked"*) ;;
        *)
          echo "error: file does not call $exe static: $desc" >&2
          exit 1
          ;;
      esac
      echo "$exe: $(stat -c %s "$exe") bytes"
      echo "  $desc"
    done
    echo "  built in $(($(date +%s) - start)) s"
  done
done

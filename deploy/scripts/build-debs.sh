#!/usr/bin/env bash
# Builds the Debian packages: vantage-agent for amd64, arm64 and armhf, and
# vantage-coordinator (with vantagectl) for amd64. Release binaries, then
# shell completions and man pages generated from the binaries' own clap
# definitions, then `cargo deb`.
#
#   bash deploy/scripts/build-debs.sh            # .debs in target/debian/
#   VANTAGE_DEB_CROSS=0 bash deploy/scripts/build-debs.sh   # amd64 only
#
# The agent packages (amd64, arm64, armhf) hold the static binaries of
# deploy/scripts/build-cross.sh (built here unless already built and up to
# date; optimised for size, see there); their completions and man page are
# the host build's (the same clap definition), and so are the unit and
# example config. The coordinator package holds the host release build.
#
# Needs cargo-deb (`cargo install --locked cargo-deb`; the test-deps script
# installs it when missing), dpkg-dev for dependency detection, and for the
# arm packages what build-cross.sh needs.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v cargo-deb >/dev/null 2>&1 && ! [ -x "$HOME/.cargo/bin/cargo-deb" ]; then
  echo "error: cargo-deb is missing: cargo install --locked cargo-deb" >&2
  exit 1
fi

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
echo "== release build"
cargo build --release --locked -p vantage-agent -p vantage-coordinator --bins

gen="$target_dir/release/gen"
rm -rf "$gen"
mkdir -p "$gen"
echo "== completions and man pages -> $gen"
for bin in vantage-agent vantage-coordinator; do
  exe="$target_dir/release/$bin"
  "$exe" completions bash >"$gen/$bin.bash"
  "$exe" completions zsh >"$gen/_$bin"
  "$exe" completions fish >"$gen/$bin.fish"
  "$exe" manpage >"$gen/$bin.1"
  for f in "$gen/$bin.bash" "$gen/_$bin" "$gen/$bin.fish" "$gen/$bin.1"; do
    [ -s "$f" ] || { echo "error: $f is empty" >&2; exit 1; }
  done
  # Debian policy: man pages compressed, reproducibly (no name or time).
  gzip -9n -f "$gen/$bin.1"
done

out="$target_dir/debian"
mkdir -p "$out"
echo "== cargo deb"
# The release profile already strips; --no-build keeps the binaries just built.
cargo deb --locked --no-build --no-strip -p vantage-coordinator --output "$out" >/dev/null

# Debian architecture <- Rust target of the packaged agent.
cross=(x86_64-unknown-linux-musl)
if [ "${VANTAGE_DEB_CROSS:-1}" != "0" ]; then
  cross+=(aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
fi
profile=${VANTAGE_CROSS_PROFILE:-release}
bash deploy/scripts/build-cross.sh "${cross[@]}"
for t in "${cross[@]}"; do
  # cargo-deb reads the target/release/... assets from target/<triple>/<profile>/.
  rm -rf "$target_dir/$t/$profile/gen"
  cp -r "$gen" "$target_dir/$t/$profile/gen"
  cargo deb --locked --no-build --no-strip -p vantage-agent --target "$t" --profile "$profile" \
    --output "$out" >/dev/null
done
ls -1 "$out"/*.deb

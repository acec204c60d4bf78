#!/usr/bin/env bash
# Runs every test: host, and aarch64 under qemu. On a fresh Debian machine it first
# installs what it needs: the rustup targets, and (as root, through apt) qemu-user
# and the aarch64 cross gcc. Usage: tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs) first" >&2; exit 1; }

step "rustup targets and components"
rustup target add aarch64-unknown-linux-musl aarch64-linux-android aarch64-unknown-linux-gnu
rustup component add rustfmt clippy

need_apt=()
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v cc >/dev/null || need_apt+=(gcc)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "missing ${need_apt[*]}: run as root, or install them with apt" >&2; exit 1
  fi
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --target aarch64-unknown-linux-musl -- -D warnings

step "host tests ($(uname -m))"
cargo test --workspace

step "aarch64 tests under qemu (-cpu cortex-a72)"
cargo test --workspace --target aarch64-unknown-linux-musl

bench-android/test-c-example.sh

echo
echo "all tests passed"

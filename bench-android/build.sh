#!/usr/bin/env bash
# Builds what goes on an arm64-v8a phone into bench-android/out/:
#   shufflenet       the CLI (stripped), for `shufflenet bench` on the phone
#   libshufflenet.a  the static library with the C API (LTO), for apps
#   shufflenet.h     its header
#   flavor           "android" or "musl": which binary this is
#
# With ANDROID_NDK_HOME set (and cargo-ndk installed: `cargo install cargo-ndk`):
#   cargo ndk -t arm64-v8a build --release -p engine -p tools
# a bionic binary for aarch64-linux-android. Otherwise: a static musl binary
# (aarch64-unknown-linux-musl, linked with rust-lld, no NDK), which runs on Android
# through `adb shell` and here under qemu. The static library is always built for
# aarch64-linux-android: a static library needs no linker, hence no NDK.
#
# The library is built with `cargo rustc --crate-type staticlib`: the engine's
# crate-type is ["rlib", "staticlib"] (the CLI needs the rlib), and for that
# combination rustc skips LTO on the static library (about 3x larger).
#
# Usage: bench-android/build.sh [--musl]   (--musl: the musl binary even with an NDK)
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo's output directory (CARGO_TARGET_DIR when set, as cargo itself reads it).
tgt=${CARGO_TARGET_DIR:-target}
out=bench-android/out
mkdir -p "$out"

musl=0
case "${1:-}" in
  --musl) musl=1 ;;
  "") ;;
  *) echo "usage: $0 [--musl]" >&2; exit 2 ;;
esac

# A strip that understands aarch64 ELF: the NDK's, else LLVM's, else binutils'.
strip_tool() {
  local s
  if [ -n "${ANDROID_NDK_HOME:-}" ]; then
    for s in "$ANDROID_NDK_HOME"/toolchains/llvm/prebuilt/*/bin/llvm-strip; do
      [ -x "$s" ] && { echo "$s"; return; }
    done
  fi
  for s in llvm-strip aarch64-linux-gnu-strip; do
    command -v "$s" >/dev/null && { echo "$s"; return; }
  done
  echo "no strip tool for aarch64 (install llvm or binutils-aarch64-linux-gnu)" >&2
  return 1
}

if [ -n "${ANDROID_NDK_HOME:-}" ] && [ "$musl" = 0 ]; then
  command -v cargo-ndk >/dev/null || { echo "ANDROID_NDK_HOME is set but cargo-ndk is missing: cargo install cargo-ndk" >&2; exit 1; }
  rustup target add aarch64-linux-android >/dev/null
  echo "==> cargo ndk -t arm64-v8a build --release -p engine -p tools (NDK: $ANDROID_NDK_HOME)"
  cargo ndk -t arm64-v8a build --release -p engine -p tools
  bin="$tgt"/aarch64-linux-android/release/shufflenet
  flavor=android
else
  rustup target add aarch64-unknown-linux-musl aarch64-linux-android >/dev/null
  echo "==> static musl binary: cargo build --release --target aarch64-unknown-linux-musl -p tools"
  cargo build --release --target aarch64-unknown-linux-musl -p tools
  bin="$tgt"/aarch64-unknown-linux-musl/release/shufflenet
  flavor=musl
fi
strip=$(strip_tool)
"$strip" -o "$out/shufflenet" "$bin"
echo "$flavor" > "$out/flavor"

echo "==> static library: cargo rustc --release --target aarch64-linux-android -p engine --lib --crate-type staticlib"
cargo rustc --release --target aarch64-linux-android -p engine --lib --crate-type staticlib
cp "$tgt"/aarch64-linux-android/release/libshufflenet.a "$out/libshufflenet.a"
# Debug sections come from the precompiled standard library; apps strip at link
# time anyway, but a smaller archive is easier to ship.
"$strip" --strip-debug "$out/libshufflenet.a"
cp engine/include/shufflenet.h "$out/"

size() { stat -c %s "$1"; }
echo
echo "bench-android/out/shufflenet       $(size "$out/shufflenet") bytes ($flavor, stripped; unstripped $(size "$bin"))"
echo "bench-android/out/libshufflenet.a  $(size "$out/libshufflenet.a") bytes (aarch64-linux-android, LTO, debug sections stripped)"
echo "bench-android/out/shufflenet.h"

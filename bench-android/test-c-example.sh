#!/usr/bin/env bash
# Tests the C API as a C program sees it, and the static libraries:
#  1. the header compiles as strict C99 and as C++, and a C file taking the address of
#     every function the header declares links against libshufflenet.a (a declared
#     function that is not exported fails to link);
#  2. the C example (example/classify.c) built with cc on the host, and with
#     aarch64-linux-gnu-gcc and run under qemu, prints the same top-5 as
#     `shufflenet run` on the same input on the same machine;
#  3. `cargo build --release --target aarch64-linux-android -p engine` produces
#     libshufflenet.a (no NDK needed for a static library), and so does the LTO
#     build of bench-android/build.sh; both export exactly the header's functions;
#     their sizes are reported.
# The host example links the `cargo build` library; the aarch64 one links the LTO
# library (`cargo rustc --crate-type staticlib`, see bench-android/build.sh: with
# crate-type ["rlib", "staticlib"] rustc skips LTO for the static library).
# Called by tools/test.sh. Needs cc, aarch64-linux-gnu-gcc (and its binutils),
# qemu-aarch64, perl; c++ if present.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo's output directory (CARGO_TARGET_DIR when set, as cargo itself reads it).
tgt=${CARGO_TARGET_DIR:-target}
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step() { printf '\n==> %s\n' "$*"; }
die() { echo "test-c-example: $*" >&2; exit 1; }
qemu=(qemu-aarch64 -cpu cortex-a72)
cflags=(-std=c99 -O2 -Wall -Wextra -Werror -pedantic -I "$root/engine/include")
host_libs=(-lpthread -ldl -lm)
gnu_libs=(-lgcc_s -lpthread -ldl -lm)

# Image size of the test: not square, so a swapped height and width would show.
H=96 W=128

# The static library alone, with LTO (what bench-android/build.sh ships).
lto_lib() { cargo rustc --release -q --target "$1" -p engine --lib --crate-type staticlib; }

step "release builds: host engine+tools, aarch64-unknown-linux-gnu LTO engine, aarch64-unknown-linux-musl tools"
cargo build --release -q -p engine -p tools
lto_lib aarch64-unknown-linux-gnu
cargo build --release -q --target aarch64-unknown-linux-musl -p tools
host_lib="$tgt"/release/libshufflenet.a
arm_lib="$tgt"/aarch64-unknown-linux-gnu/release/libshufflenet.a
host_cli="$tgt"/release/shufflenet
arm_cli="$tgt"/aarch64-unknown-linux-musl/release/shufflenet

step "header: strict C99 and C++, every declared function links"
printf '#include "shufflenet.h"\nint main(void) { return 0; }\n' > "$tmp/h.c"
cc "${cflags[@]}" -fsyntax-only "$tmp/h.c"
if command -v c++ >/dev/null; then
  c++ -x c++ -std=c++11 -Wall -Wextra -Werror -pedantic -I engine/include -fsyntax-only "$tmp/h.c"
else
  echo "no c++: the header's C++ check is skipped"
fi
# The preprocessor drops the comments; what is left calling-shaped is a declaration.
mapfile -t fns < <(cc -E -P engine/include/shufflenet.h \
  | grep -oE '\bsn_[a-z_]+[[:space:]]*\(' | tr -d ' (' | sort -u)
[ ${#fns[@]} -ge 17 ] || die "only ${#fns[@]} functions found in the header"
{
  echo '#include <stdio.h>'
  echo '#include "shufflenet.h"'
  echo 'typedef void (*fn)(void);'
  echo 'static const fn all[] = {'
  for f in "${fns[@]}"; do echo "  (fn)$f,"; done
  echo '};'
  echo 'int main(void) {'
  echo '  size_t i, n = 0;'
  echo '  for (i = 0; i < sizeof all / sizeof all[0]; i++) n += all[i] != 0;'
  echo '  printf("%lu\n", (unsigned long)n);'
  echo '  return 0;'
  echo '}'
} > "$tmp/addrs.c"
# Casting between function pointer types is fine in C but -pedantic flags it.
cc -std=c99 -Wall -Werror -I engine/include "$tmp/addrs.c" "$host_lib" "${host_libs[@]}" -o "$tmp/addrs"
n=$("$tmp/addrs")
[ "$n" = "${#fns[@]}" ] || die "linked $n of ${#fns[@]} functions"
aarch64-linux-gnu-gcc -std=c99 -Wall -Werror -I engine/include "$tmp/addrs.c" "$arm_lib" "${gnu_libs[@]}" -o "$tmp/addrs-arm"
n=$("${qemu[@]}" -L /usr/aarch64-linux-gnu "$tmp/addrs-arm")
[ "$n" = "${#fns[@]}" ] || die "aarch64: linked $n of ${#fns[@]} functions"
echo "${#fns[@]} declared functions link on the host and on aarch64"

step "model and a ${H}x${W} raw RGB image"
"$host_cli" synth --groups 3 --scale 0.5 -o "$tmp/model.snm"
# Gradients in R and G, a pattern in B: deterministic and not flat.
perl -e 'my ($h, $w) = @ARGV; for my $y (0 .. $h - 1) { for my $x (0 .. $w - 1) {
  print pack("C3", int(255 * $x / $w), int(255 * $y / $h), ($x * $y * 7 + 50) % 256) } }' \
  "$H" "$W" > "$tmp/img.rgb"
[ "$(wc -c < "$tmp/img.rgb")" -eq $((H * W * 3)) ] || die "image has the wrong size"

top5() { grep '^top-5:' | sed 's/ ([^)]*)//g'; }

# compare NAME C_OUTPUT CLI_OUTPUT: same top-5 class indices.
compare() {
  local c cli
  c=$(top5 <<< "$2")
  cli=$(top5 <<< "$3")
  printf '%s\n' "$2" | sed "s/^/  $1 C example: /"
  printf '%s\n' "$3" | sed "s/^/  $1 shufflenet run: /"
  [ -n "$c" ] || die "$1: the C example printed no top-5"
  [ "$c" = "$cli" ] || die "$1: C example '$c' differs from shufflenet run '$cli'"
  echo "  $1: same top-5 ($c)"
}

step "C example on the host (cc)"
cc "${cflags[@]}" bench-android/example/classify.c "$host_lib" "${host_libs[@]}" -o "$tmp/classify"
out=$("$tmp/classify" "$tmp/model.snm" "$tmp/img.rgb" "$H" "$W" "$tmp/in-host.npy")
cli=$("$host_cli" run "$tmp/model.snm" --input "$tmp/in-host.npy")
compare host "$out" "$cli"
# Wrong usage is reported, not crashed on.
if "$tmp/classify" "$tmp/model.snm" "$tmp/img.rgb" "$W" "$((H + 1))" 2> "$tmp/err"; then
  die "a wrongly sized image was accepted"
fi
grep -q 'expected' "$tmp/err" || die "no size message: $(cat "$tmp/err")"
if "$tmp/classify" "$tmp/missing.snm" "$tmp/img.rgb" "$H" "$W" 2> "$tmp/err"; then
  die "a missing model was accepted"
fi
grep -q 'missing.snm' "$tmp/err" || die "no file name in: $(cat "$tmp/err")"

step "C example on aarch64 under qemu (aarch64-linux-gnu-gcc)"
aarch64-linux-gnu-gcc "${cflags[@]}" bench-android/example/classify.c "$arm_lib" "${gnu_libs[@]}" -o "$tmp/classify-arm"
out=$("${qemu[@]}" -L /usr/aarch64-linux-gnu "$tmp/classify-arm" "$tmp/model.snm" "$tmp/img.rgb" "$H" "$W" "$tmp/in-arm.npy")
cli=$("${qemu[@]}" "$arm_cli" run "$tmp/model.snm" --input "$tmp/in-arm.npy")
compare aarch64 "$out" "$cli"
cmp -s "$tmp/in-host.npy" "$tmp/in-arm.npy" || die "host and aarch64 preprocessing differ"
aarch64-linux-gnu-strip -o "$tmp/classify-arm-stripped" "$tmp/classify-arm"
echo "  the stripped aarch64 C example (engine included, glibc dynamic): $(stat -c %s "$tmp/classify-arm-stripped") bytes"

# exports LIB: the sorted sn_ functions LIB defines.
exports() {
  aarch64-linux-gnu-readelf -sW "$1" 2>/dev/null \
    | awk '$4 == "FUNC" && $5 == "GLOBAL" && $7 != "UND" && $8 ~ /^sn_/ { print $8 }' | sort -u
}

# check_android WHAT: the Android library exports the header's functions; prints sizes.
check_android() {
  local lib="$tgt"/aarch64-linux-android/release/libshufflenet.a
  [ -s "$lib" ] || die "$lib was not produced"
  [ "$(exports "$lib")" = "$(printf '%s\n' "${fns[@]}")" ] \
    || die "$lib exports $(exports "$lib" | tr '\n' ' '), the header declares ${fns[*]}"
  cp "$lib" "$tmp/lib.a"
  aarch64-linux-gnu-strip --strip-debug "$tmp/lib.a"
  echo "$1: $lib, $(stat -c %s "$lib") bytes ($(stat -c %s "$tmp/lib.a") without debug sections)"
}

step "static library for Android (aarch64-linux-android, no NDK needed)"
cargo build --release -q --target aarch64-linux-android -p engine
check_android "cargo build"
lto_lib aarch64-linux-android
check_android "LTO (cargo rustc --crate-type staticlib)"

echo
echo "C example and static library tests passed"

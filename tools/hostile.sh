#!/usr/bin/env bash
# Hostile-input checks (not part of tools/test.sh: they need nightly and take long).
#
#   tools/hostile.sh fuzz [SECONDS] [TARGET...]   fuzz each target for SECONDS (default
#                                                 600), one after the other, at nice 19
#   tools/hostile.sh miri                         Miri over the model-file loader, the
#                                                 planner and the scalar kernels
#   tools/hostile.sh asan                         engine and kernels tests under
#                                                 AddressSanitizer (portable path)
#   tools/hostile.sh all [SECONDS]                all three
#
# Fuzz targets (tools/fuzz/fuzz_targets): model_file, onnx_import, npy, session. The seed
# corpus is tools/fuzz/seeds/TARGET (committed); what libFuzzer finds goes to
# tools/fuzz/corpus/TARGET, crashes to tools/fuzz/artifacts/TARGET, the log to
# $FUZZ/logs/TARGET.log (all ignored by git). Reproduce a crash with
#   cargo +nightly fuzz run --fuzz-dir tools/fuzz -a TARGET tools/fuzz/artifacts/TARGET/crash-...
# Needs: rustup toolchain nightly with components miri and rust-src, and cargo-fuzz
# (`cargo install cargo-fuzz`); the script installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
TARGETS=(model_file onnx_import npy session)
FUZZ=tools/fuzz

setup() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
  rustup +nightly component add miri rust-src
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
}

fuzz() {
  local secs=${1:-600}
  shift || true
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
  step "building the fuzz targets (release, debug assertions and overflow checks on, ASan)"
  nice -n 19 cargo +nightly fuzz build --fuzz-dir "$FUZZ" -a
  mkdir -p $FUZZ/logs
  for t in "${targets[@]}"; do
    step "fuzzing $t for ${secs}s"
    mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
    # -timeout: an input running longer than 20 s is reported as a hang;
    # -rss_limit_mb / -malloc_limit_mb: a run above 2 GiB, or a single allocation
    # above 1 GiB (an allocation sized by an untrusted count), is a crash.
    if nice -n 19 cargo +nightly fuzz run --fuzz-dir "$FUZZ" -a "$t" "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" -- \
        -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 -artifact_prefix="$FUZZ/artifacts/$t/" \
        >"$FUZZ/logs/$t.log" 2>&1; then
      grep -E 'stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb' \
        "$FUZZ/logs/$t.log" | sed "s/^/  $t: /"
    else
      echo "  $t: FAILED, see $FUZZ/logs/$t.log and $FUZZ/artifacts/$t/" >&2
      tail -n 40 "$FUZZ/logs/$t.log" >&2
      return 1
    fi
  done
}

miri() {
  # Miri with its default isolation. Selected so that each run takes minutes, not
  # hours (Miri interprets every operation):
  # - hostile_miri: every dispatched kernel against its scalar twin on tiny shapes,
  #   a miniature ShuffleNet through the planner, the model-file writer and loader
  #   (aligned and unaligned bytes), a session and the reference; damaged files;
  # - model_file: the loader's round trips and corrupted-file suite, without the
  #   tests that map or write files (file-backed mmap is outside Miri's reach, and
  #   isolation forbids the file system: `statx`; `large_files` writes and reads a
  #   full 1x model's file), and without its two random-damage
  #   tests (500 damaged loads each: still running after 25 minutes under Miri;
  #   hostile_miri loads 64 resealed damaged files instead);
  # - the engine's unit tests of the arena scheduler, checksum, .npy, ONNX tensor
  #   decoding and sorting, BatchNorm folding and the reference executor (the
  #   other planner unit tests build and calibrate full ShuffleNets: too slow);
  # - the kernels' short-buffer test (the against_scalar sweeps take hours under
  #   Miri; hostile_miri covers every kernel at tiny sizes instead, and a session
  #   whose units run on two threads by rows) and `PlaneRows`' own tests.
  step "miri: hostile_miri (kernels, planner, loader, session)"
  nice -n 19 cargo +nightly miri test -p engine --test hostile_miri -- --skip two_threads
  # A session on two threads starts a rayon pool, whose crossbeam-epoch breaks a
  # Stacked Borrows rule (a retag in `Local::element_of`) before any of our code
  # runs; Tree Borrows accepts it and still checks the threads' row split. The
  # test compares bits, and by default Miri perturbs `exp` (the softmax) at random;
  # rayon's global epoch collector is never freed (reported as leaks at exit).
  step "miri: a session on two threads, split by rows (Tree Borrows)"
  MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-tree-borrows -Zmiri-deterministic-floats -Zmiri-ignore-leaks" \
    nice -n 19 cargo +nightly miri test -p engine --test hostile_miri two_threads
  step "miri: model_file (loader, corrupted files)"
  nice -n 19 cargo +nightly miri test -p engine --test model_file -- \
    --skip open_ --skip write --skip on_disk --skip random_damage --skip writing_ \
    --skip large_files
  step "miri: engine unit tests (arena, checksum, npy, onnx tensors, fold_bn, reference)"
  nice -n 19 cargo +nightly miri test -p engine --lib -- \
    arena:: model_file:: npy:: onnx::tensor onnx::topo plan::fold_bn reference::
  step "miri: kernels"
  nice -n 19 cargo +nightly miri test -p kernels --test against_scalar kernels_refuse
  step "miri: plane rows (threads writing different rows of the same planes)"
  nice -n 19 cargo +nightly miri test -p kernels --lib plane_rows
}

asan() {
  # The x86 build is the NEON-free (portable) path. -Zbuild-std instruments std too;
  # the explicit --target keeps the sanitizer flags off build scripts and proc macros.
  step "AddressSanitizer: engine and kernels tests"
  RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
    ASAN_OPTIONS="detect_leaks=1" \
    nice -n 19 cargo +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu \
    -p engine -p kernels --lib --tests
}

cmd=${1:-}
shift || true
case "$cmd" in
  fuzz) setup; fuzz "$@" ;;
  miri) setup; miri ;;
  asan) setup; asan ;;
  all) setup; fuzz "${1:-600}"; miri; asan ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac

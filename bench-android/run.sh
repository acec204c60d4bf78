#!/usr/bin/env bash
# The paper's Table 8 on a phone: ShuffleNet 0.5x, 1x and 2x (g = 3) at 224x224,
# 480x640 and 720x1280, one `shufflenet bench --json` per model, and a table of
# milliseconds per inference with the speedup between model sizes next to their
# FLOP ratio.
#
# Phone (default): needs `adb` and one device (or ANDROID_SERIAL), and
# bench-android/out/shufflenet from build.sh (run first if missing). Pushes the
# binary and the models to /data/local/tmp/shufflenet, runs the benchmark there
# (pinned to one core with `taskset` if --core is given, the core's cpufreq
# governor noted), pulls the JSON back into bench-android/out/results/.
#
# --qemu: no phone; runs the same sequence here with qemu-aarch64 -cpu cortex-a72
# and the static musl binary. If the icount plugin exists (/tmp/icount/libicount.so
# or $ICOUNT) it reports executed instructions per inference, (count of a 3-run
# bench - count of a 1-run bench) / 2, which is deterministic; otherwise qemu
# milliseconds (which say nothing about a phone).
#
# Usage: bench-android/run.sh [--qemu] [--models 0.5,1,2] [--groups 3]
#          [--resolutions 224x224,480x640,720x1280] [--runs 20] [--warmup 3]
#          [--threads 1] [--segments] [--core N] [--profile]
#   --profile (phone only): afterwards, per model, the time per stage and per
#   kernel (`shufflenet bench --profile`), saved as results/<model>.profile.txt
#   --segments: with several threads, one row-pipeline segment per thread
#   (`shufflenet bench --segments`) instead of splitting each kernel call
#   (a subset, e.g. --models 0.5,1 --resolutions 224x224, keeps --qemu quick)
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo's output directory (CARGO_TARGET_DIR when set, as cargo itself reads it).
tgt=${CARGO_TARGET_DIR:-target}
root=$PWD
out=$root/bench-android/out
results=$out/results

qemu=0 models=0.5,1,2 groups=3 resolutions=224x224,480x640,720x1280
runs=20 warmup=3 threads=1 core="" segments="" profile=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --qemu) qemu=1 ;;
    --models) models=${2:?}; shift ;;
    --groups) groups=${2:?}; shift ;;
    --resolutions) resolutions=${2:?}; shift ;;
    --runs) runs=${2:?}; shift ;;
    --warmup) warmup=${2:?}; shift ;;
    --threads) threads=${2:?}; shift ;;
    --core) core=${2:?}; shift ;;
    --segments) segments=--segments ;;
    --profile) profile=1 ;;
    -h|--help) usage ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
  shift
done
if [ "$qemu" = 1 ] && [ "$profile" = 1 ]; then
  echo "--profile times stages on the phone; qemu time says nothing about one" >&2
  exit 2
fi
IFS=, read -ra scales <<< "$models"
IFS=, read -ra sizes <<< "$resolutions"
mkdir -p "$results"
rows=$results/rows.tsv # model  resolution  mflops  value
: > "$rows"

# Models, written by the host's CLI (the same bytes on every machine).
echo "==> models: ShuffleNet v1 ${models}x (g = $groups)"
cargo build --release -q -p tools
for s in "${scales[@]}"; do
  m=$out/models/g$groups-${s}x.snm
  [ -s "$m" ] || { mkdir -p "$out/models"; "$tgt"/release/shufflenet synth --groups "$groups" --scale "$s" -o "$m"; }
done

# json_field NAME: the value of "NAME" in the JSON objects on stdin, one per line.
json_field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p"; }

if [ "$qemu" = 1 ]; then
  cargo build --release -q --target aarch64-unknown-linux-musl -p tools
  bin="$tgt"/aarch64-unknown-linux-musl/release/shufflenet
  plugin=${ICOUNT:-/tmp/icount/libicount.so}
  q=(qemu-aarch64 -cpu cortex-a72)
  mode=tb
  [ "$threads" -gt 1 ] && mode=cb # per-instruction callbacks count every thread
  if [ -f "$plugin" ]; then
    unit="M instructions per inference"
    where="qemu-aarch64 -cpu cortex-a72, icount plugin, $threads thread(s)"
  else
    unit="ms (qemu, not a phone)"
    where="qemu-aarch64 -cpu cortex-a72 without the icount plugin (build it: bash /work/shared/tools/icount/build.sh)"
  fi
  echo "==> $where"
  # total FILE: instructions counted by the plugin.
  total() { sed -n 's/^ICOUNT .*"total":\([0-9]*\).*/\1/p' "$1"; }
  for s in "${scales[@]}"; do
    m=$out/models/g$groups-${s}x.snm
    for r in "${sizes[@]}"; do
      tag=g$groups-${s}x-$r
      if [ -f "$plugin" ]; then
        for n in 1 3; do
          "${q[@]}" -plugin "$plugin,out=$results/$tag-$n.icount,mode=$mode" "$bin" bench "$m" \
            --resolutions "$r" --runs "$n" --warmup 0 --threads "$threads" $segments --json \
            2>/dev/null > "$results/$tag-$n.json"
        done
        c1=$(total "$results/$tag-1.icount") c3=$(total "$results/$tag-3.icount")
        [ -n "$c1" ] && [ -n "$c3" ] || { echo "no ICOUNT line for $tag" >&2; exit 1; }
        value=$(awk -v a="$c1" -v b="$c3" 'BEGIN { printf "%.2f", (b - a) / 2 / 1e6 }')
        json=$results/$tag-3.json
      else
        json=$results/$tag.json
        "${q[@]}" "$bin" bench "$m" --resolutions "$r" --runs "$runs" --warmup "$warmup" \
          --threads "$threads" $segments --json 2>/dev/null > "$json"
        value=$(json_field median_ms < "$json")
      fi
      mflops=$(json_field mflops < "$json")
      printf '%s\t%s\t%s\t%s\n' "$s" "$r" "$mflops" "$value" >> "$rows"
      echo "  ${s}x $r: $value"
    done
  done
else
  command -v adb >/dev/null || { echo "adb not found (install platform-tools), or use --qemu" >&2; exit 1; }
  [ -s "$out/shufflenet" ] || bench-android/build.sh
  dev=/data/local/tmp/shufflenet
  adb get-state >/dev/null || { echo "no device: connect one (adb devices) or use --qemu" >&2; exit 1; }
  echo "==> device $(adb shell getprop ro.product.model | tr -d '\r'), $(adb shell getprop ro.product.cpu.abi | tr -d '\r')"
  adb shell mkdir -p "$dev"
  adb push "$out/shufflenet" "$dev/shufflenet" >/dev/null
  adb shell chmod 755 "$dev/shufflenet"
  for s in "${scales[@]}"; do
    adb push "$out/models/g$groups-${s}x.snm" "$dev/" >/dev/null
  done
  pin="" note="not pinned"
  if [ -n "$core" ]; then
    pin="taskset $(printf '%x' $((1 << core)))"
    gov=$(adb shell cat "/sys/devices/system/cpu/cpu$core/cpufreq/scaling_governor" 2>/dev/null | tr -d '\r' || true)
    freq=$(adb shell cat "/sys/devices/system/cpu/cpu$core/cpufreq/scaling_max_freq" 2>/dev/null | tr -d '\r' || true)
    note="pinned to cpu$core, governor ${gov:-unknown}, max ${freq:-?} kHz"
  fi
  unit="ms per inference (median of $runs runs after $warmup warm-up)"
  where="$(adb shell getprop ro.product.model | tr -d '\r'), $threads thread(s), $note"
  echo "==> $where"
  for s in "${scales[@]}"; do
    name=g$groups-${s}x
    # The JSON is written on the phone and pulled back (adb shell mangles line ends).
    adb shell "cd $dev && $pin ./shufflenet bench $name.snm --resolutions $resolutions --runs $runs --warmup $warmup --threads $threads $segments --json > $name.json"
    adb pull "$dev/$name.json" "$results/$name.json" >/dev/null
    while IFS= read -r line; do
      r=$(json_field resolution <<< "$line")
      printf '%s\t%s\t%s\t%s\n' "$s" "$r" "$(json_field mflops <<< "$line")" \
        "$(json_field median_ms <<< "$line")" >> "$rows"
      printf '  %sx %s: %.3f ms\n' "$s" "$r" "$(json_field median_ms <<< "$line")"
    done < "$results/$name.json"
  done
fi

# The table: models down, resolutions across; then the ratio between consecutive
# model sizes, measured next to the FLOP ratio.
echo
echo "ShuffleNet v1 (g = $groups): $unit"
echo "$where"
awk -F'\t' -v models="$models" -v sizes="$resolutions" '
  { v[$1 "@" $2] = $4; f[$1 "@" $2] = $3 }
  END {
    nm = split(models, M, ","); ns = split(sizes, S, ",")
    printf "%-10s %16s", "model", "MFLOPs@" S[1]
    for (j = 1; j <= ns; j++) printf " %12s", S[j]
    printf "\n"
    for (i = 1; i <= nm; i++) {
      printf "%-10s %16s", M[i] "x", ((M[i] "@" S[1]) in f) ? sprintf("%.1f", f[M[i] "@" S[1]]) : "-"
      for (j = 1; j <= ns; j++) {
        k = M[i] "@" S[j]
        printf " %12s", (k in v && v[k] != "") ? sprintf("%.2f", v[k]) : "-"
      }
      printf "\n"
    }
    if (nm < 2) exit
    printf "\nmeasured ratio (FLOP ratio)\n"
    printf "%-10s %16s", "", ""
    for (j = 1; j <= ns; j++) printf " %12s", S[j]
    printf "\n"
    for (i = 2; i <= nm; i++) {
      printf "%-10s %16s", M[i] "x/" M[i-1] "x", ""
      for (j = 1; j <= ns; j++) {
        a = M[i-1] "@" S[j]; b = M[i] "@" S[j]
        if ((a in v) && (b in v) && v[a] > 0 && f[a] > 0)
          printf " %12s", sprintf("%.2f (%.2f)", v[b] / v[a], f[b] / f[a])
        else
          printf " %12s", "-"
      }
      printf "\n"
    }
  }' "$rows" | tee "$results/table.txt"

# Where the time goes on the phone: per stage and per kernel.
if [ "$profile" = 1 ]; then
  for s in "${scales[@]}"; do
    name=g$groups-${s}x
    adb shell "cd $dev && $pin ./shufflenet bench $name.snm --resolutions $resolutions --runs $runs --warmup $warmup --threads $threads $segments --profile > $name.profile.txt"
    adb pull "$dev/$name.profile.txt" "$results/$name.profile.txt" >/dev/null
    echo
    echo "==> ${s}x profile ($results/$name.profile.txt)"
    grep -A20 "by kernel" "$results/$name.profile.txt"
  done
fi

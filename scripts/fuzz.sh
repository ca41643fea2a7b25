#!/usr/bin/env bash
# Runs the control plane's cargo-fuzz targets (control-plane/fuzz), each for a
# bounded time, and prints one line per target: runs, executions per second,
# corpus size, result. Exits non-zero if any target found a crash.
#
#   scripts/fuzz.sh                      # every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh xds_requests
#   FUZZ_UPDATE_CORPUS=1 scripts/fuzz.sh # also merge what was found into
#                                        # the committed corpora (cmin, then
#                                        # drop inputs over 1 KiB)
#
# Stable Rust is enough: targets are built without a sanitizer (-s none;
# the crates forbid unsafe code). FUZZ_TOOLCHAIN=nightly FUZZ_SANITIZER=address
# adds AddressSanitizer for the dependencies' unsafe code.
#
# Not part of scripts/test.sh or CI: it is a long run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

tools="${LOOKASIDE_TOOLS:-$HOME/.cache/lookaside/tools}"
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
toolchain=()
if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
  toolchain=("+${FUZZ_TOOLCHAIN}")
fi
# Sanitizer-coverage flags would invalidate the main build cache.
export CARGO_TARGET_DIR="${LOOKASIDE_FUZZ_TARGET:-$HOME/.cache/lookaside/fuzz-target}"
# New inputs land here, not in the committed corpora (see FUZZ_UPDATE_CORPUS).
work="${LOOKASIDE_FUZZ_WORK:-$HOME/.cache/lookaside/fuzz-work}"
# Committed inputs stay small: the corpora together under 2 MB.
max_input="${FUZZ_CORPUS_MAX_BYTES:-1024}"

export PATH="$tools/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $tools" >&2
  cargo install cargo-fuzz --locked --version 0.13.2 --root "$tools"
fi

cd "$root/control-plane"
if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

echo "building ${targets[*]} (sanitizer: $sanitizer, target dir: $CARGO_TARGET_DIR)" >&2
for target in "${targets[@]}"; do
  cargo "${toolchain[@]}" fuzz build -s "$sanitizer" "$target" >&2
done

failed=0
summary=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  scratch="$work/$target"
  log="$work/$target.log"
  mkdir -p "$corpus" "$scratch"
  # Hand-made seeds, read as a third corpus (cmin never drops them).
  seeds=()
  if [[ -d "fuzz/seeds/$target" ]]; then
    seeds+=("fuzz/seeds/$target")
  fi
  extra=()
  if [[ -f "fuzz/$target.dict" ]]; then
    extra+=("-dict=fuzz/$target.dict")
  fi
  echo "fuzzing $target for ${seconds}s (log: $log)" >&2
  set +e
  cargo "${toolchain[@]}" fuzz run -s "$sanitizer" "$target" "$scratch" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    "${extra[@]}" >"$log" 2>&1
  status=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corp=$(grep -Eo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
  if [[ $status -eq 0 ]]; then
    result="ok"
  else
    failed=1
    artifact=$(grep -Eo 'fuzz/artifacts/[^ ]+' "$log" | tail -1 || true)
    result="CRASH (exit $status) ${artifact:-see $log}"
    tail -40 "$log" >&2
    if [[ -n "$artifact" ]]; then
      echo "reproduce: (cd control-plane && cargo fuzz run -s $sanitizer $target $artifact)" >&2
    fi
  fi
  if [[ $status -eq 0 && "${FUZZ_UPDATE_CORPUS:-0}" == 1 ]]; then
    cp -n "$scratch"/* "$corpus"/ 2>/dev/null || true
    cargo "${toolchain[@]}" fuzz cmin -s "$sanitizer" "$target" "$corpus" >>"$log" 2>&1
    find "$corpus" -type f -size +"${max_input}"c -delete
  fi
  units=$(find "$corpus" -type f | wc -l)
  bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s / 1024 }')
  summary+=("$(printf '%-14s runs=%-9s exec/s=%-7s corpus(run)=%-12s corpus(committed)=%s files/%sKiB  %s' \
    "$target" "${runs:-?}" "${speed:-?}" "${corp:-?}" "$units" "$bytes" "$result")")
done

printf '%s\n' "${summary[@]}"
exit "$failed"

#!/usr/bin/env bash
# test.sh: set up, build and run every test with ctest.
#
#   scripts/test.sh                 unit + integration tests (build/)
#   scripts/test.sh --asan          the same under AddressSanitizer and
#                                   UndefinedBehaviorSanitizer (build-asan/)
#   scripts/test.sh -L unit         only one label (unit or integration)
#   scripts/test.sh -R REGEX        only tests whose name matches
#   scripts/test.sh --no-fuzz       skip the fuzz run
#
# A full run (no -L/-R, no --asan) ends by building the libFuzzer targets
# with clang, ASan and UBSan (build-fuzz/) and running each for
# DSP_FUZZ_SECONDS (default 20) seconds: label `fuzz`.
#
# Integration tests start their own private ZooKeeper servers (Debian's
# package) on free loopback ports; a missing ZooKeeper fails them. Exits
# non-zero on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build"
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
ctest_args=()
fuzz=1
while (($#)); do
  case $1 in
    --asan) build="$root/build-asan"; cmake_args+=(-DDSP_SANITIZE=ON); fuzz=0 ;;
    --no-fuzz) fuzz=0 ;;
    -L|-R) [[ $# -ge 2 ]] || { echo "test.sh: $1 needs a value" >&2; exit 2; }
           ctest_args+=("$1" "$2"); shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

"$root/scripts/setup.sh"
cmake -S "$root" -B "$build" "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"

# ASan: report leaks, abort on the first error; UBSan: print stacks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

cd "$build"
# Unit tests in parallel; integration tests one at a time: each runs a JVM
# ZooKeeper and real session timeouts, which a starved CPU would distort.
status=0
if [[ ${#ctest_args[@]} -gt 0 ]]; then
  ctest --output-on-failure "${ctest_args[@]}" || status=$?
else
  ctest --output-on-failure -L unit -j"$(nproc)" || status=$?
  ctest --output-on-failure -L integration || status=$?
  if [[ $fuzz == 1 ]]; then
    fb="$root/build-fuzz"
    CC=clang cmake -S "$root" -B "$fb" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSP_FUZZ=ON \
      -DDSP_SANITIZE=ON -DDSP_FUZZ_SECONDS="${DSP_FUZZ_SECONDS:-20}" >/dev/null
    cmake --build "$fb" --target fuzz_frame fuzz_json fuzz_peek -j"$(nproc)"
    (cd "$fb" && ctest --output-on-failure -L fuzz) || status=$?
  fi
fi
exit "$status"

#!/bin/sh
# Run every libFuzzer target of tests/fuzz (every fuzz_*.c) for SECONDS each:
# `tests/fuzz/run.sh BUILDDIR SECONDS [NAME...]` (NAME: egd for fuzz_egd; default: all).
# New corpus entries go to BUILDDIR/corpus/NAME (the seeds in tests/fuzz/corpus/NAME are only
# read) and crash artefacts to BUILDDIR/artifacts/. Prints each target's executions; exits
# non-zero as soon as a target reports a finding (libFuzzer's own exit status).
set -eu
build=$1
seconds=$2
shift 2
root=$(cd "$(dirname "$0")" && pwd)
total=0
ran=0
for src in "$root"/fuzz_*.c; do
	name=$(basename "$src" .c)
	if [ $# -gt 0 ]; then
		case " $* " in
		*" ${name#fuzz_} "*) ;;
		*) continue ;;
		esac
	fi
	corpus=${name#fuzz_}
	ran=$((ran + 1))
	exe="$build/$name"
	log="$build/$name.log"
	[ -x "$exe" ] || { echo "fuzz: $exe is not built" >&2; exit 1; }
	mkdir -p "$build/corpus/$corpus" "$build/artifacts"
	status=0
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		"$exe" -max_total_time="$seconds" -print_final_stats=1 \
		-artifact_prefix="$build/artifacts/$name-" \
		"$build/corpus/$corpus" "$root/corpus/$corpus" >"$log" 2>&1 || status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	echo "fuzz: $name: ${runs:-?} executions in $seconds s (log: $log)"
	total=$((total + ${runs:-0}))
	if [ "$status" -ne 0 ]; then
		tail -n 40 "$log" >&2
		echo "fuzz: $name found a problem (exit status $status); artefacts in $build/artifacts" >&2
		exit "$status"
	fi
done
if [ "$ran" -eq 0 ]; then
	echo "fuzz: no target matches: $*" >&2
	exit 1
fi
echo "fuzz: $total executions in all ($ran targets)"

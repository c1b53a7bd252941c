#!/usr/bin/env bash
# Install rxstore from a bundle made by benchmarks/make_wheelhouse.sh and run the fan-out benchmarks
# sized to the machine, without network access (issue 15: 10,000 clients, 1-16 workers):
#
#   bash device_run.sh BUNDLE [OUT]      (OUT default: $OUT, else ./rxstore-bench-out)
#
# BUNDLE holds wheels/ and rxstore.tar.gz. Writes to OUT: machine.txt (the machine described),
# scale.json, scale.md (the tables), scale.log (everything printed), install.log.
# Environment: PYTHON (default: the newest of python3.13, python3.12, python3.11, python3 found),
#   CLIENTS (10000), WORKERS ("1 2 4 8 16"), ONLY ("scale fanout delivery storm"),
#   QUICK (set to 1 for --quick, the benchmarks' own small sizes unless CLIENTS/WORKERS are given: a
#   check that it all works), WORK (default: a temp dir, left there).
set -euo pipefail

BUNDLE="$(cd "${1:?usage: device_run.sh BUNDLE [OUT]}" && pwd)"
OUT="${2:-${OUT:-$PWD/rxstore-bench-out}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [ -n "${QUICK:-}" ]; then  # the benchmarks' own quick sizes unless given
    CLIENTS="${CLIENTS:-}" WORKERS="${WORKERS:-}"
else
    CLIENTS="${CLIENTS:-10000}" WORKERS="${WORKERS:-1 2 4 8 16}"
fi
ONLY="${ONLY:-scale fanout delivery storm}"
WORK="${WORK:-$(mktemp -d -t rxstore-device-XXXXXX)}"

if [ -z "${PYTHON:-}" ]; then
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null; then PYTHON="$candidate"; break; fi
    done
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "device_run.sh: $PYTHON is $("$PYTHON" -V 2>&1); rxstore needs 3.11+ (set PYTHON)" >&2; exit 2; }

started=$(date +%s)
echo "== installing into $WORK/venv with $("$PYTHON" -V 2>&1) (no network: --no-index)"
tar -xzf "$BUNDLE/rxstore.tar.gz" -C "$WORK"
SRC="$WORK/rxstore"
"$PYTHON" -m venv "$WORK/venv"
VENV_PY="$WORK/venv/bin/python"
"$VENV_PY" -m pip install --no-index --find-links "$BUNDLE/wheels" --disable-pip-version-check \
    "$SRC[bench]" >"$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log" >&2; exit 1; }
installed=$(date +%s)
echo "installed in $((installed - started)) s"

# Thousands of sockets: the benchmark's processes (gateway workers, client processes) inherit this.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srmo)"
    echo "cores (nproc): $(nproc)"
    grep -m1 'model name' /proc/cpuinfo || true
    command -v lscpu >/dev/null && lscpu | grep -E '^(Socket|Core|Thread|NUMA node\(s\)|CPU MHz|L3)' || true
    grep -E '^(MemTotal|MemAvailable)' /proc/meminfo || true
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "open files limit: $(ulimit -n)"
    echo "glibc: $(ldd --version 2>&1 | head -1)"
    echo "python: $("$VENV_PY" -V 2>&1)"
    echo "project: $(cat "$BUNDLE/project.txt" 2>/dev/null || echo "?")"
    echo "install: $((installed - started)) s"
    echo "packages:"
    "$VENV_PY" -m pip freeze --disable-pip-version-check | sed 's/^/  /'
} >"$OUT/machine.txt"

args=(--only $ONLY --json "$OUT/scale.json" --markdown "$OUT/scale.md")
if [ -n "$CLIENTS" ]; then args+=(--clients "$CLIENTS"); fi
if [ -n "$WORKERS" ]; then args+=(--workers $WORKERS); fi
if [ -n "${QUICK:-}" ]; then args+=(--quick); fi
echo "== python -m benchmarks ${args[*]}"
status=0
(cd "$SRC" && PYTHONUNBUFFERED=1 "$VENV_PY" -m benchmarks "${args[@]}") 2>&1 | tee "$OUT/scale.log" || status=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
echo "benchmarks: $(($(date +%s) - installed)) s, exit status $status" | tee -a "$OUT/machine.txt"
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$status"

#!/usr/bin/env bash
# Make a bundle to run the fan-out benchmarks on a machine without network access (issue 15):
#
#   benchmarks/make_wheelhouse.sh [DEST]        (default DEST: wheelhouse/, git-ignored)
#
# DEST/wheels/     wheels of the project's dependencies with the gateway, msgpack and bench extras
#                  (pyproject.toml), for CPython 3.11, 3.12 and 3.13 on manylinux x86_64, plus
#                  setuptools/wheel to build the project there; binary wheels only, but for
#                  SOURCE_ONLY (pure-Python packages without a wheel: pydux), built into wheels here
# DEST/rxstore.tar.gz   `git archive HEAD` of the project (commit what you want measured first)
# DEST/project.txt     the commit archived
# DEST/device_run.sh    the script that installs and runs it there (benchmarks/device_run.sh)
#
# Copy DEST to the machine and run `bash DEST/device_run.sh DEST OUT` there.
# Needs: python3 >= 3.11 (tomllib), pip, git, network access (PyPI or the index pip is configured with).
# Environment: PYTHONS (default "3.11 3.12 3.13"), PYTHON (the interpreter running pip, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$(mkdir -p "${1:-$ROOT/wheelhouse}" && cd "${1:-$ROOT/wheelhouse}" && pwd)"
PYTHON="${PYTHON:-python3}"
PYTHONS="${PYTHONS:-3.11 3.12 3.13}"
mkdir -p "$DEST/wheels"

# The requirements: the dependencies plus the extras gateway, msgpack, fast and bench, with the
# project's own extras (rxstore[...]) expanded.
REQUIREMENTS="$DEST/requirements.txt"
"$PYTHON" - "$ROOT/pyproject.toml" >"$REQUIREMENTS" <<'PY'
import re
import sys
import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
wanted, seen, out = ["gateway", "msgpack", "fast", "bench"], set(), list(project["dependencies"])
while wanted:
    extra = wanted.pop()
    if extra in seen:
        continue
    seen.add(extra)
    for requirement in extras[extra]:
        own = re.fullmatch(r"rxstore\[(.*)\]", requirement)
        if own:
            wanted.extend(name.strip() for name in own.group(1).split(","))
        else:
            out.append(requirement)
out += ["setuptools>=69", "wheel"]  # to build the project from its archive there (pip's build isolation)
# Needed on CPython 3.11.0-3.11.2 only (redis: python_full_version < "3.11.3"), which
# `pip download --python-version 3.11` takes as a newer 3.11: Debian 12's python3 is 3.11.2.
out += ["async-timeout>=4.0.3"]
print("\n".join(dict.fromkeys(out)))
PY
# Pure-Python packages published without a wheel: built into one here (py3-none-any), not downloaded.
SOURCE_ONLY="${SOURCE_ONLY:-pydux}"
grep -v -E "^($(echo $SOURCE_ONLY | tr ' ' '|'))([^a-zA-Z0-9_.-]|$)" "$REQUIREMENTS" >"$REQUIREMENTS.binary" || true
for name in $SOURCE_ONLY; do
    echo "== $name: a wheel built from its source"
    "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$DEST/wheels" \
        "$(grep -E "^$name([^a-zA-Z0-9_.-]|$)" "$REQUIREMENTS")"
done
echo "requirements ($REQUIREMENTS):" $(cat "$REQUIREMENTS")

# manylinux2014 (glibc 2.17) first: the most machines; manylinux_2_28 only where a package has no older wheel
PLATFORMS=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
for version in $PYTHONS; do
    echo "== CPython $version"
    "$PYTHON" -m pip download --quiet --only-binary=:all: --implementation cp --python-version "$version" \
        "${PLATFORMS[@]}" --dest "$DEST/wheels" -r "$REQUIREMENTS.binary"
done

git -C "$ROOT" archive --format=tar.gz --prefix=rxstore/ -o "$DEST/rxstore.tar.gz" HEAD
git -C "$ROOT" log -1 --format='%H %cI %s' HEAD | cut -c1-200 >"$DEST/project.txt"
cp "$ROOT/benchmarks/device_run.sh" "$DEST/device_run.sh"
echo "bundle: $DEST ($(ls "$DEST/wheels" | wc -l) wheels, $(du -sh "$DEST" | cut -f1)); project at $(git -C "$ROOT" rev-parse --short HEAD)"
echo "there: bash device_run.sh $DEST OUT"

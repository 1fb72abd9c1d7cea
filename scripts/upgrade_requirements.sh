#!/usr/bin/env bash
# make upgrade: re-pin requirements/*.txt from the .in files, once per pinned interpreter.
#
# pip-compile resolves for the interpreter it runs on (openedx-events 11 and Django 6 need 3.12, for
# example), so each pinned Python gets its own compile: the default (3.12) writes requirements/*.txt,
# which Python 3.13 installs as well, and 3.11 writes requirements/py311/*.txt for the layers that
# run on it. Each compile runs pip-tools from a small venv of that Python, pinned by requirements/dev.txt.
# UPGRADE=0 keeps the current pins where they still fit (after editing a .in file).
set -euo pipefail
cd "$(dirname "$0")/.."

# python version, output directory (relative to requirements/), layers
TARGETS=(
    "3.12 . pip base test quality doc dev reference"
    "3.11 py311 pip test reference"
)
ARGS=(-q --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links)
if [ "${UPGRADE:-1}" != 0 ]; then
    ARGS+=(--upgrade)
fi

for target in "${TARGETS[@]}"; do
    read -r version out layers <<<"$target"
    found="$(scripts/find_python.sh "$version")"
    venv=".venv-pip-compile-py${version/./}"
    if [ ! -x "$venv/bin/pip-compile" ]; then
        "${found% *}" -m venv --clear "$venv"
    fi
    # Same pip-tools (and pip) as the dev layer, whichever Python runs it.
    "$venv/bin/python" -m pip install -q -c requirements/dev.txt pip pip-tools
    mkdir -p "requirements/$out"
    for layer in $layers; do
        output="$layer.txt"
        if [ "$out" != . ]; then output="$out/$output"; fi
        echo "pip-compile on Python $version: requirements/$layer.in -> requirements/$output" >&2
        (cd requirements && "../$venv/bin/pip-compile" "${ARGS[@]}" "$layer.in" -o "$output")
    done
done

#!/usr/bin/env bash
# Find a working interpreter for a Python version and print "ABSOLUTE_PATH X.Y".
#
#   scripts/find_python.sh python3.12     (or 3.12, or /path/to/python3.12, or python3 as it is)
#
# A name on PATH is not enough: pyenv's shims exist for every installed version but answer only for
# the versions pyenv has selected, so every candidate is run before it is accepted. Tried in order:
# the name on PATH, `pyenv prefix X.Y`, then ${PYENV_ROOT:-~/.pyenv}/versions/X.Y*/bin/pythonX.Y
# (newest first). The interpreter must be able to create virtualenvs (venv and ensurepip).
set -uo pipefail

spec="${1:?usage: find_python.sh python3.X | 3.X | /path/to/python}"
# sys.executable: a pyenv shim execs the real interpreter, whose path is the one to keep.
probe='import sys, venv, ensurepip; print("%s %d.%d" % (sys.executable, *sys.version_info[:2]))'
tried=()

accept() {  # accept CANDIDATE [WANTED_VERSION]: print and exit 0 if it runs (and has that version)
    local candidate="$1" wanted="${2:-}" found
    tried+=("$candidate")
    command -v "$candidate" >/dev/null 2>&1 || return 1
    found="$(env -u PYTHONHOME -u PYTHONPATH "$candidate" -c "$probe" 2>/dev/null)" || return 1
    if [ -n "$wanted" ] && [ "${found##* }" != "$wanted" ]; then
        return 1
    fi
    echo "$found"
    exit 0
}

case "$spec" in
    */*)
        accept "$spec"
        echo "find_python: $spec does not run, or lacks the venv/ensurepip modules" >&2
        exit 1
        ;;
    python | python3)
        accept "$spec"
        echo "find_python: $spec is not on PATH or lacks the venv/ensurepip modules" >&2
        exit 1
        ;;
    python3.[0-9]*) version="${spec#python}" ;;
    3.[0-9]*) version="$spec" ;;
    *)
        echo "find_python: give a version such as python3.12, 3.12 or a path, not '$spec'" >&2
        exit 2
        ;;
esac

name="python$version"
accept "$name" "$version"
tried+=("pyenv prefix $version")
if command -v pyenv >/dev/null 2>&1; then
    for prefix in $(pyenv prefix "$version" 2>/dev/null | tr ':' ' '); do
        accept "$prefix/bin/$name" "$version"
    done
fi
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
tried+=("$pyenv_root/versions/$version*/bin/$name")
for candidate in $(ls -d "$pyenv_root"/versions/"$version"* 2>/dev/null | sort -rV); do
    accept "$candidate/bin/$name" "$version"
done

{
    echo "find_python: no working Python $version found. Tried:"
    printf '  %s\n' "${tried[@]}"
    echo "Install Python $version (for example 'pyenv install $version', or your system's package with"
    echo "its venv module), or name an interpreter: make ... PYTHON=/path/to/$name"
} >&2
exit 1

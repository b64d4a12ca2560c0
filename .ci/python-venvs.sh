#!/usr/bin/env bash
# Creates (or reuses) the Python environments the export test reads Parquet and CSV with:
# pyarrow 12 and 14 with a pandas of their time and numpy 1.x (both were built against it),
# the versions common on clusters. Prints the venv folders, colon-separated, for
# CLORCH_TEST_PYTHON_VENVS. The folders live in .ci/venvs/ (gitignored) and are reused when
# their python imports the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
# pyarrow 12 has wheels for CPython 3.7-3.11 only: prefer a 3.11 or older interpreter.
python=${PYTHON:-}
if [ -z "$python" ]; then
    for candidate in python3.11 python3.10 python3.9 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
    done
fi
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "python-venvs: need a Python 3.8-3.11 with venv and ensurepip (Debian: python3-venv); set PYTHON" >&2
    exit 1
fi
export OMP_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
paths=()
for pins in "pyarrow12:pyarrow==12.* pandas==2.0.* numpy<2" "pyarrow14:pyarrow==14.* pandas==2.1.* numpy<2"; do
    name=${pins%%:*}
    packages=${pins#*:}
    dir=.ci/venvs/$name
    wanted=${packages%% *}; wanted=${wanted#pyarrow==}; wanted=${wanted%.\*}
    if ! "$dir/bin/python" -c "import pandas, pyarrow, sys; sys.exit(pyarrow.__version__.split('.')[0] != '$wanted')" >/dev/null 2>&1; then
        echo "creating $dir ($packages)" >&2
        rm -rf "$dir"
        "$python" -m venv "$dir"
        # shellcheck disable=SC2086 # the pins are separate arguments
        if ! "$dir/bin/pip" install --quiet --only-binary=:all: $packages >&2; then
            echo "python-venvs: installing $packages into $dir with $("$python" --version) failed" \
                "(pyarrow 12 has no wheels beyond Python 3.11; set PYTHON)" >&2
            rm -rf "$dir"
            exit 1
        fi
    fi
    paths+=("$PWD/$dir")
done
(IFS=:; echo "${paths[*]}")

#!/usr/bin/env bash
# Creates (or reuses) the Python environments the export test reads Parquet and CSV with:
# pyarrow 12 and 14 with a pandas of their time and numpy 1.x (both were built against it),
# the versions common on clusters. Prints the venv folders, colon-separated, for
# CLORCH_TEST_PYTHON_VENVS. The folders live in .ci/venvs/ (gitignored) and are reused when
# their python imports the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
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
        "$dir/bin/pip" install --quiet --only-binary=:all: $packages >&2
    fi
    paths+=("$PWD/$dir")
done
(IFS=:; echo "${paths[*]}")

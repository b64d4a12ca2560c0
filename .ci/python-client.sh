#!/usr/bin/env bash
# Tests the Python worker client (clients/python) and the numpy example worker
# (examples/python-numpy) in a venv at .ci/venvs/python-client (gitignored), created or reused,
# with pytest, numpy and jsonschema from PyPI and the client installed from this checkout
# (`pip install ./clients/python`, reinstalled every time so the tests see the current code).
# The last line of standard output is the venv's python, for CLORCH_TEST_PYTHON (the Rust
# tests run external workers with it). Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1; then
    echo "python-client: need a Python >= 3.9 with venv and ensurepip (Debian: python3-venv); set PYTHON" >&2
    exit 1
fi
export OMP_NUM_THREADS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
dir=.ci/venvs/python-client
# setuptools >= 70.1 builds wheels by itself (older ones need the `wheel` package).
if ! "$dir/bin/python" -c 'import pytest, numpy, jsonschema, setuptools, sys; sys.exit(tuple(map(int, setuptools.__version__.split(".")[:2])) < (70, 1))' >/dev/null 2>&1; then
    echo "creating $dir (pytest numpy jsonschema setuptools)" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    "$dir/bin/pip" install --quiet pytest numpy jsonschema 'setuptools>=70.1' >&2
fi
# Without build isolation, so that reinstalling needs no index once the venv exists.
"$dir/bin/pip" install --quiet --force-reinstall --no-deps --no-build-isolation ./clients/python >&2
rm -rf clients/python/build clients/python/src/clorch_worker.egg-info
# Not from the source folder: the installed package is what a worker imports.
"$dir/bin/python" -c 'import clorch_worker, sys; sys.exit(not clorch_worker.__file__.startswith(sys.prefix))'
tests=(clients/python/tests)
if [ -d examples/python-numpy/tests ]; then tests+=(examples/python-numpy/tests); fi
# The bytecode of the checkout stays out of the tree (pytest's cache too).
PYTHONDONTWRITEBYTECODE=1 "$dir/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}" >&2
echo "$PWD/$dir/bin/python"

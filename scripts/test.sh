#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates the virtualenv it needs from the
# project's own files, then runs the lint checks and every test (doctests included).
#   bash scripts/test.sh                 # newest kedro/mlflow the index serves, in .venv
#   VENV=.venv-oldest CONSTRAINTS=.ci/oldest.txt bash scripts/test.sh   # oldest declared
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k hooks).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
pip_args=(-q --disable-pip-version-check)
"$VENV/bin/python" -m pip install "${pip_args[@]}" --upgrade pip
if [ -n "${CONSTRAINTS:-}" ]; then pip_args+=(-c "$CONSTRAINTS"); fi
"$VENV/bin/python" -m pip install "${pip_args[@]}" -e ".[test,lint,examples]"

export PATH="$PWD/$VENV/bin:$PATH"
export KEDRO_DISABLE_TELEMETRY=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
"$VENV/bin/python" -c "import kedro, mlflow; print(f'kedro {kedro.__version__}, mlflow {mlflow.__version__}')"

if [ -z "${SKIP_LINT:-}" ]; then
    ruff format --check kedroflow tests benchmarks scripts conftest.py .ci
    ruff check kedroflow tests benchmarks scripts conftest.py .ci
    lint-imports
    mypy
fi
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile -q -rfEs "$@"

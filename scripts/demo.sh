#!/usr/bin/env bash
# kedroflow end to end, offline, in a few minutes: bash scripts/demo.sh
#
#  1. creates ./.venv (once) with kedroflow from this repository and the example's needs;
#  2. runs the example project examples/reviews: etl_instances, etl_labels (training
#     and held-out test splits), training (tracked in MLflow, model evaluated on the
#     held-out reviews and registered; the promotion gate decides whether it becomes
#     reviews_classifier@champion), user_app (scores new reviews, logs their drift);
#  3. serves the registered model with `mlflow models serve` on 127.0.0.1, sends it a few
#     reviews, prints the answers and stops the server.
# Safe to run again: data is rewritten, each training adds a run and a model version
# (the same data gives the same model: the gate keeps the champion, which it does not beat).
#
# Environment overrides (used by the tests):
#   KEDROFLOW_DEMO_VENV       virtualenv to create/use            (default: <repo>/.venv)
#   KEDROFLOW_DEMO_PROJECT    project to run                      (default: <repo>/examples/reviews)
#   KEDROFLOW_DEMO_SKIP_INSTALL=1   use the virtualenv as it is (no pip)
#   PYTHON                    interpreter that creates the venv   (default: python3)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KEDROFLOW_DEMO_VENV:-$REPO/.venv}"
PROJECT="$(cd "${KEDROFLOW_DEMO_PROJECT:-$REPO/examples/reviews}" && pwd)"
LOG="$PROJECT/demo.log"
MODEL="reviews_classifier"
export KEDRO_DISABLE_TELEMETRY=1 MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1
export PYTHONWARNINGS="ignore" MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT=true
export PATH="$VENV/bin:$PATH"   # kedro, mlflow and uvicorn of the venv
unset MLFLOW_TRACKING_URI MLFLOW_REGISTRY_URI MLFLOW_RUN_ID

step() { printf '\n\033[1m==> %s\033[0m  [%ss]\n' "$*" "$SECONDS"; }
fail() { printf '\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

# ---- 1. environment -----------------------------------------------------------------
step "Python environment: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    "${PYTHON:-python3}" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null \
        || fail "kedroflow needs Python >= 3.10: set PYTHON=/path/to/python3.x"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
wanted="$(cat "$REPO/pyproject.toml" "$PROJECT/requirements.txt" | cksum)"
if [ "${KEDROFLOW_DEMO_SKIP_INSTALL:-0}" = 1 ]; then
    echo "using it as it is (KEDROFLOW_DEMO_SKIP_INSTALL=1)"
elif [ "$(cat "$VENV/.kedroflow-demo" 2>/dev/null)" = "$wanted" ]; then
    echo "already set up"
else
    echo "installing kedroflow from $REPO and the example's requirements (once)..."
    "$VENV/bin/python" -m pip install --quiet --no-compile --disable-pip-version-check \
        -e "$REPO[examples]" -r "$PROJECT/requirements.txt"
    echo "$wanted" > "$VENV/.kedroflow-demo"
fi

# ---- 2. the Kedro project -------------------------------------------------------------
cd "$PROJECT"
: > "$LOG"
run() {  # run <title> <kedro run args...>: quiet, full output in demo.log
    local title="$1"; shift
    step "$title"
    echo "kedro run $*"
    if ! kedro run "$@" >> "$LOG" 2>&1; then
        tail -n 40 "$LOG" >&2
        fail "kedro run $* (full output: $LOG)"
    fi
}
run "Create training reviews and their sentiments (etl_instances, etl_labels)" \
    --pipelines etl_instances,etl_labels
run "Create held-out test reviews and their sentiments (split=test)" \
    --pipelines etl_instances,etl_labels --params split=test
run "Train, log to MLflow, evaluate on held-out data, register $MODEL, gate @champion (training)" \
    --pipelines training
run "Create new, unlabelled reviews (etl_instances, split=new)" --pipelines etl_instances --params split=new
run "Score them with the registered model, flag follow-ups (user_app)" --pipelines user_app --params split=new

step "What MLflow recorded (store: $PROJECT/mlflow.db)"
python - "$MODEL" <<'PY'
import sys
from mlflow import MlflowClient

name = sys.argv[1]
client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
latest = max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
print(f"promotion gate version {latest.version}: {latest.tags.get('kedroflow.promotion')}")
version = client.get_model_version_by_alias(name, "champion")
run = client.get_run(version.run_id)
data = run.data
print(f"training run   {run.info.run_id}  ({run.info.status})")
print(f"parameters     {len(data.params)}, e.g. training.epochs={data.params.get('training.epochs')}")
for key in ("accuracy", "f1", "roc_auc"):
    match = [k for k in data.metrics if k.endswith(key)]
    if match:
        print(f"metric         {match[0]} = {data.metrics[match[0]]:.3f}")
for key in ("f1_score", "worst_slice.f1_score"):
    if key in data.metrics:
        print(f"evaluation     {key} = {data.metrics[key]:.3f} (held-out reviews)")
slices = sorted(k for k in data.metrics if k.startswith("slice.") and k.endswith(".f1_score"))
print("per slice      " + ", ".join(f"{k.split('.')[2]} {data.metrics[k]:.3f}" for k in slices))
history = client.get_metric_history(run.info.run_id, "valid.log_loss")
print(f"history        valid.log_loss over {len(history)} epochs: "
      f"{history[0].value:.3f} -> {history[-1].value:.3f}")
artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
print(f"artifacts      {', '.join(artifacts) or '-'}")
print(f"inputs         {', '.join(d.dataset.name for d in run.inputs.dataset_inputs) or '-'}")
print(f"model          models:/{name}@champion = version {version.version}")
experiment = client.get_experiment_by_name("reviews")
(scoring,) = client.search_runs(
    [experiment.experiment_id], "tags.`kedro.pipeline` = 'user_app'",
    order_by=["attributes.start_time DESC"], max_results=1,
)
drift = {k: v for k, v in scoring.data.metrics.items() if k.startswith("drift.")}
print("drift          " + ", ".join(f"{k} = {v:.3f}" for k, v in sorted(drift.items())))
PY
echo
echo "Where the champion comes from (kedro mlflow lineage models:/$MODEL@champion):"
# (Kedro logs its logging setup first: print from the command's own first line)
kedro mlflow lineage "models:/$MODEL@champion" 2>>"$LOG" | sed -n '/^models:\//,$p' \
    | sed 's/^/  /' || fail "kedro mlflow lineage (full output: $LOG)"
echo
echo "Reviews flagged for follow-up (data/08_reporting/follow_ups_new.csv):"
python - <<'PY'
import pandas as pd

flagged = pd.read_csv("data/08_reporting/follow_ups_new.csv")
with pd.option_context("display.width", 120, "display.max_colwidth", 60):
    print(flagged.to_string(index=False))
PY

# ---- 3. serve the registered model ------------------------------------------------------
PORT="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
step "Serve models:/$MODEL@champion on http://127.0.0.1:$PORT"
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM -- "-$SERVER_PID" 2>/dev/null || kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        echo "server (PID $SERVER_PID) stopped"
    fi
    SERVER_PID=""
}
trap stop_server EXIT
set -m  # the server gets its own process group: stopping it stops uvicorn too
MLFLOW_TRACKING_URI="sqlite:///$PROJECT/mlflow.db" mlflow models serve \
    -m "models:/$MODEL@champion" --env-manager local -h 127.0.0.1 -p "$PORT" \
    >> "$LOG" 2>&1 &
SERVER_PID=$!
set +m
echo "mlflow models serve (PID $SERVER_PID), waiting until it answers..."
python - "$PORT" "$SERVER_PID" <<'PY' || { tail -n 30 "$LOG" >&2; fail "the model server did not start (full output: $LOG)"; }
import os, sys, time, urllib.request

port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 180
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("server exited")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
            if answer.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("timeout")
PY

step "POST /invocations"
python - "$PORT" <<'PY' || fail "the model server did not answer as expected (see $LOG)"
import json, sys, urllib.request

reviews = [
    "What a wonderful film, the cast was brilliant!",
    "Boring plot and awful acting. A painful evening.",
    "The soundtrack was superb, but honestly the ending felt predictable.",
    "Dull, lifeless characters... I want my money back.",
]
body = {"dataframe_split": {"columns": ["text"], "data": [[r] for r in reviews]}}
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/invocations",
    data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=60) as answer:
    predictions = json.load(answer)["predictions"]
print(json.dumps(body)[:100] + " ...")
for review, prediction in zip(reviews, predictions):
    print(f"  {prediction['sentiment']:>8}  ({prediction['confidence']:.2f})  {review}")
PY
stop_server

step "Done"
cat <<EOF
Look at the runs, metric curves, the learning-curve plot and the registered model:
    cd $PROJECT && source $VENV/bin/activate && kedro mlflow ui
then open http://127.0.0.1:5000 (Ctrl-C stops the UI). Full logs: $LOG
EOF

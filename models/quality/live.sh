#!/usr/bin/env bash
# The live service on a dataset: replays DIR's transactions and labels (in event-time order, at
# RATE records a second) into `vigil serve` with its defaults (8 partitions, its own champion
# retrained on its schedule from what it logged), then writes the decisions it committed as
# DIR/scores_live.csv for quality.py (`--vigil live=DIR/scores_live.csv`).
#
#   models/quality/live.sh data/synccfd 4000 [path/to/vigil]
#
# Needs Postgres (127.0.0.1:5432, user postgres, trust) and Redis (127.0.0.1:6379); starts the
# embedded broker itself and drops its database afterwards. A faster RATE leaves each
# retraining less event time between its start and its champion serving (the backtest
# switches at once); DIR/live.log has the service's log, retrainings included.
set -euo pipefail

dir=${1:?usage: live.sh DIR RATE [VIGIL]}
rate=${2:?usage: live.sh DIR RATE [VIGIL]}
vigil=${3:-./target/release/vigil}
database=vigil_quality_live
psql_admin() { psql -qAt -h 127.0.0.1 -U postgres -d postgres -c "$1"; }

psql_admin "DROP DATABASE IF EXISTS $database WITH (FORCE)"
psql_admin "CREATE DATABASE $database"
export VIGIL__POSTGRES__URL="postgres://postgres@127.0.0.1:5432/$database"
export VIGIL__REDIS__PREFIX="vigil_quality_live"
export VIGIL__INGEST__LISTEN=127.0.0.1:0

broker_out=$(mktemp)
"$vigil" dev-broker --partitions 8 >"$broker_out" 2>/dev/null &
broker=$!
serve=
cleanup() {
    [ -n "$serve" ] && kill "$serve" 2>/dev/null || true
    kill "$broker" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$broker_out"
}
trap cleanup EXIT
until [ -s "$broker_out" ]; do sleep 0.2; done
export VIGIL__KAFKA__BROKERS=$(head -1 "$broker_out")
# A key of its own for card-number tokens (the services refuse published ones).
export VIGIL__PAN_KEY="${VIGIL__PAN_KEY:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}"

"$vigil" migrate >/dev/null
"$vigil" serve >"$dir/live.out" 2>"$dir/live.log" &
serve=$!
expected=$(wc -l <"$dir/transactions.ndjson")
started=$(date +%s)
"$vigil" replay --transactions "$dir/transactions.ndjson" --labels "$dir/labels.ndjson" \
    --rate "$rate" 2>/dev/null
decided() { psql -qAt -h 127.0.0.1 -U postgres -d "$database" -c "SELECT count(*) FROM decisions"; }
until [ "$(decided)" -ge "$expected" ]; do sleep 2; done
echo "replayed and decided $expected transactions in $(($(date +%s) - started)) s"
psql -qAt -h 127.0.0.1 -U postgres -d "$database" -c \
    "SELECT at, outcome, model_version, frauds, round(average_precision::numeric, 4),
            round(champion_average_precision::numeric, 4), round(seconds::numeric, 1)
       FROM retrainings ORDER BY at"
psql -q -h 127.0.0.1 -U postgres -d "$database" -c \
    "\\copy (SELECT transaction_id, score, decision, model_version FROM decisions) TO '$dir/scores_live.csv' CSV HEADER"
echo "wrote $dir/scores_live.csv"
psql_admin "DROP DATABASE $database WITH (FORCE)" || true

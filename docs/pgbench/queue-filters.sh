#!/usr/bin/env bash
# The alert queue's eight filters (those `vigil bench api` sends, first pages) as the API sends
# them, each timed alone with pgbench (prepared statements, one client, round trip included), on
# the database `vigil bench api` leaves. BENCHMARKS.md quotes the "latency average" lines.
#   bash docs/pgbench/queue-filters.sh [postgres://postgres@127.0.0.1:5432/vigil_bench_api]
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/vigil_bench_api}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cols="a.transaction_id AS id, a.card_id, a.merchant_id, a.occurred_at, a.score, a.decision,
 a.rules AS reasons, a.status, a.assignee, a.disposition, a.version, a.created_at, a.updated_at"
newest="ORDER BY a.occurred_at DESC, a.transaction_id DESC LIMIT 51"
cat > "$dir/open-newest.sql" <<EOF
SELECT $cols FROM alerts a WHERE a.status = 'open' $newest;
EOF
cat > "$dir/open-by-score.sql" <<EOF
SELECT $cols FROM alerts a WHERE a.status = 'open'
 ORDER BY a.score DESC, a.occurred_at DESC, a.transaction_id DESC LIMIT 51;
EOF
cat > "$dir/card.sql" <<EOF
\set c random(0, 49999)
SELECT $cols FROM alerts a WHERE a.card_id = 'card_' || :c $newest;
EOF
cat > "$dir/merchant-open.sql" <<EOF
\set m random(0, 4999)
SELECT $cols FROM alerts a WHERE a.merchant_id = 'm_' || :m AND a.status = 'open' $newest;
EOF
cat > "$dir/assignee-in-review.sql" <<EOF
\set i random(0, 19)
SELECT $cols FROM alerts a WHERE a.assignee = 'investigator_' || :i AND a.status = 'in_review' $newest;
EOF
cat > "$dir/reason-open.sql" <<EOF
SELECT $cols FROM alert_reasons r JOIN alerts a USING (transaction_id)
 WHERE r.reason = 'CARD_TESTING' AND a.status = 'open'
 ORDER BY r.occurred_at DESC, r.transaction_id DESC LIMIT 51;
EOF
cat > "$dir/declines-0.9.sql" <<EOF
SELECT $cols FROM alerts a WHERE a.decision = 'decline' AND a.score >= 0.9 $newest;
EOF
cat > "$dir/one-day-open.sql" <<EOF
\set d random(1, 29)
SELECT $cols FROM alerts a WHERE a.status = 'open'
 AND a.occurred_at >= timestamptz '2026-01-01' + :d * interval '1 day'
 AND a.occurred_at < timestamptz '2026-01-02' + :d * interval '1 day' $newest;
EOF
for script in "$dir"/*.sql; do
    printf '%-22s ' "$(basename "$script" .sql)"
    pgbench -n -M prepared -c 1 -T 8 -f "$script" "$url" 2>&1 | grep 'latency average'
done

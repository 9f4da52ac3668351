"""Reads what `vigil generate --out DIR` wrote into the columns `quality.py` reads (DIR/raw.parquet,
DIR/dataset.json), so that the peers run on our own generator's data too:

    vigil generate --out data/gen183 --days 183
    python models/quality/vigil_data.py data/gen183
    vigil backtest --transactions data/gen183/transactions.ndjson --labels data/gen183/labels.ndjson \
        --out data/gen183/scores.csv
    python models/quality/quality.py data/gen183 --vigil vigil=data/gen183/scores.csv --test-start 150

Cards stand for the simulator's customers and merchants for its terminals; the truth is the
generator's truth.csv (every fraud, whenever its chargeback comes).
"""

import argparse
import json

import numpy as np
import pandas as pd


def number(ids):
    return ids.str.extract(r"(\d+)$", expand=False).astype(np.int64)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="where `vigil generate` wrote transactions.ndjson and truth.csv")
    args = parser.parse_args()
    columns = ["transaction_id", "occurred_at", "card_id", "merchant_id", "amount_minor"]
    parts = []
    with pd.read_json(f"{args.dir}/transactions.ndjson", lines=True, chunksize=500_000,
                      dtype=False) as reader:
        for chunk in reader:
            parts.append(chunk[columns])
    tx = pd.concat(parts, ignore_index=True)
    frauds = set(pd.read_csv(f"{args.dir}/truth.csv", usecols=["transaction_id"]).transaction_id)
    when = pd.to_datetime(tx.occurred_at, utc=True, format="ISO8601").dt.tz_localize(None)
    raw = pd.DataFrame(
        {
            "TRANSACTION_ID": number(tx.transaction_id),
            "TX_DATETIME": when,
            "CUSTOMER_ID": number(tx.card_id),
            "TERMINAL_ID": number(tx.merchant_id),
            "TX_AMOUNT": tx.amount_minor / 100.0,
            "TX_FRAUD": tx.transaction_id.isin(frauds).astype(int),
        }
    )
    raw = raw.sort_values(["TX_DATETIME", "TRANSACTION_ID"], kind="stable").reset_index(drop=True)
    raw["TX_TIME_DAYS"] = (raw.TX_DATETIME - raw.TX_DATETIME.iloc[0].normalize()).dt.days
    raw.to_parquet(f"{args.dir}/raw.parquet")
    with open(f"{args.dir}/dataset.json", "w") as f:
        json.dump({"source": "vigil generate", "dir": args.dir, "transactions": len(raw),
                   "frauds": int(raw.TX_FRAUD.sum())}, f, indent=1)
    print(f"{len(raw)} transactions, {raw.TX_FRAUD.mean():.2%} fraud, {raw.TX_TIME_DAYS.max() + 1} days")


if __name__ == "__main__":
    main()

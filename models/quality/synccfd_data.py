"""Generates SynCCFD (PyPI `synccfd`, another team's simulator) and converts it to Vigil's v1
contract, for the quality benchmark (`quality.py`).

Writes to OUT:
  raw.parquet           the simulator's transactions, sorted by time and renumbered (what the
                        peers read; `TRANSACTION_ID` equals Vigil's id without its `t`)
  transactions.ndjson   v1 transactions: card and customer `c<id>`/`u<id>`, terminal `m<id>`,
                        amount in cents (BRL), card present as `pos` at the terminal's position,
                        not present as `ecom` at the shipping position (a remote terminal's
                        position says nothing of the cardholder)
  labels.ndjson         every outcome, known 7 days after its payment (`--delay-days`), with
                        `card_id`: frauds as chargebacks, genuine payments as imports

    python models/quality/synccfd_data.py OUT [--customers 5000 --terminals 10000 --days 183 --seed 7]
"""

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
from synccfd import DatasetGenerator

START_DATE = "2018-04-01"


def simulate(args):
    generator = DatasetGenerator(
        n_customers=args.customers,
        n_terminals=args.terminals,
        nb_days=args.days,
        start_date=START_DATE,
        random_state=args.seed,
    )
    _, _, tx = generator.generate()
    # The simulator's ids are out of time order where stolen-card payments were moved to the
    # day of the theft: sort by time and number them again.
    tx = tx.sort_values(["TX_DATETIME", "TRANSACTION_ID"], kind="stable").reset_index(drop=True)
    tx["TRANSACTION_ID"] = np.arange(len(tx))
    tx["TX_TIME_DAYS"] = (tx.TX_DATETIME - pd.Timestamp(START_DATE)).dt.days
    return tx


def rfc3339(times):
    return times.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_transactions(tx, path):
    present = tx.TX_TYPE == "CP"
    frame = pd.DataFrame(
        {
            "transaction_id": "t" + tx.TRANSACTION_ID.astype(str),
            "occurred_at": rfc3339(tx.TX_DATETIME),
            "card_id": "c" + tx.CUSTOMER_ID.astype(int).astype(str),
            "customer_id": "u" + tx.CUSTOMER_ID.astype(int).astype(str),
            "merchant_id": "m" + tx.TERMINAL_ID.astype(int).astype(str),
            "amount_minor": (tx.TX_AMOUNT * 100).round().astype(np.int64),
            "currency": "BRL",
            "country": "BR",
            "channel": np.where(present, "pos", "ecom"),
            "lat": np.where(present, tx.TX_TERM_LAT, tx.TX_SHIPP_LAT).round(5),
            "lon": np.where(present, tx.TX_TERM_LONG, tx.TX_SHIPP_LONG).round(5),
        }
    )
    frame.to_json(path, orient="records", lines=True)


def write_labels(tx, path, delay_days):
    fraud = tx.TX_FRAUD == 1
    frame = pd.DataFrame(
        {
            "transaction_id": "t" + tx.TRANSACTION_ID.astype(str),
            "is_fraud": fraud,
            "labelled_at": rfc3339(tx.TX_DATETIME + pd.Timedelta(days=delay_days)),
            "source": np.where(fraud, "chargeback", "import"),
            "card_id": "c" + tx.CUSTOMER_ID.astype(int).astype(str),
        }
    )
    frame = frame.iloc[np.argsort(frame.labelled_at.values, kind="stable")]
    frame.to_json(path, orient="records", lines=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="directory to write to")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--terminals", type=int, default=10000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay-days", type=int, default=7, help="when each outcome is known [7]")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()
    tx = simulate(args)
    tx.to_parquet(f"{args.out}/raw.parquet")
    write_transactions(tx, f"{args.out}/transactions.ndjson")
    write_labels(tx, f"{args.out}/labels.ndjson", args.delay_days)
    with open(f"{args.out}/dataset.json", "w") as f:
        json.dump({**vars(args), "start_date": START_DATE, "transactions": len(tx),
                   "frauds": int(tx.TX_FRAUD.sum())}, f, indent=1)
    print(
        f"{len(tx)} transactions, {tx.TX_FRAUD.mean():.2%} fraud, "
        f"written to {args.out} in {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()

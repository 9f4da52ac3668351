"""The quality benchmark: Vigil next to its peers on exactly the same data that no one here wrote
(SynCCFD, made by `synccfd_data.py`), with the standard protocol of the fraud-detection handbook
(Le Borgne et al.): a training week, a 7-day delay in which no label is known yet, a test week;
cards already known to be defrauded removed from each test day; AUC-ROC, average precision and
card precision@100 (per day, the 100 cards with the highest score, the share of them defrauded
that day). Then every method's average precision week by week over the whole stream.

Peers, all on the 15 classic features (per customer: count and mean amount over 1/7/30 days;
per terminal: count and fraud rate over 1/7/30 days ending `--delay-days` back; the amount;
weekend; night):
  logistic regression   scikit-learn, standardized, trained on the training week
  gradient boosting     scikit-learn HistGradientBoosting, trained on every day before the delay
  river online LR       River's logistic regression, learning each label `--delay-days` after
                        its payment, scoring every payment before it (the online peer)

Vigil is read from the `scores.csv` files of `vigil backtest` runs (`--vigil NAME=PATH`,
repeatable). With `--examples DIR` (from `vigil train --export-examples`), the same two batch
learners are also fitted on Vigil's own feature vectors.

    python models/quality/quality.py DATA --vigil vigil=scores.csv [--test-start 129]
        [--json report.json]
"""

import argparse
import json
import sys
import time
from collections import deque

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DAY = pd.Timedelta(days=1)
OWN_TREES = "vigil's trees (its examples)"
CLASSIC = (
    ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
    + [f"CUSTOMER_ID_{s}_{w}DAY_WINDOW" for w in (1, 7, 30) for s in ("NB_TX", "AVG_AMOUNT")]
    + [f"TERMINAL_ID_{s}_{w}DAY_WINDOW" for w in (1, 7, 30) for s in ("NB_TX", "RISK")]
)


def rolling_sum(tx, key, column, days):
    """Per key, the sum of `column` over the `days` days up to and including each row."""
    frame = tx[[key, "TX_DATETIME", column]].sort_values([key, "TX_DATETIME"], kind="stable")
    sums = (
        frame.groupby(key, sort=False)
        .rolling(f"{days}D", on="TX_DATETIME")[column]
        .sum()
        .to_numpy()
    )
    return pd.Series(sums, index=frame.index).reindex(tx.index)


def classic_features(tx, delay_days):
    """The handbook's 15 features, computed over the whole stream in time order."""
    tx = tx.copy()
    tx["TX_DURING_WEEKEND"] = (tx.TX_DATETIME.dt.day_of_week >= 5).astype(int)
    tx["TX_DURING_NIGHT"] = (tx.TX_DATETIME.dt.hour <= 6).astype(int)
    tx["ONE"] = 1.0
    for w in (1, 7, 30):
        count = rolling_sum(tx, "CUSTOMER_ID", "ONE", w)
        tx[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = count
        tx[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = (
            rolling_sum(tx, "CUSTOMER_ID", "TX_AMOUNT", w) / count
        )
    fraud_delay = rolling_sum(tx, "TERMINAL_ID", "TX_FRAUD", delay_days)
    count_delay = rolling_sum(tx, "TERMINAL_ID", "ONE", delay_days)
    for w in (1, 7, 30):
        frauds = rolling_sum(tx, "TERMINAL_ID", "TX_FRAUD", delay_days + w) - fraud_delay
        count = rolling_sum(tx, "TERMINAL_ID", "ONE", delay_days + w) - count_delay
        tx[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = count
        tx[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = np.where(count > 0, frauds / count.clip(1), 0.0)
    return tx


def known_defrauded(tx, start, delay_days, train_days=7):
    """For each payment of the week from day `start`, whether its card is known to be defrauded
    by then, as the handbook's protocol has it: a fraud on it from the training week's first day
    (`start - delay - train`) to `delay + 1` days before the payment's day. Such cards are
    blocked, so ranking them is no achievement."""
    first = start - delay_days - train_days
    fraud = tx[(tx.TX_FRAUD == 1) & (tx.TX_TIME_DAYS >= first)]
    known_from = (fraud.TX_TIME_DAYS + delay_days + 1).groupby(fraud.CUSTOMER_ID).min()
    in_week = (tx.TX_TIME_DAYS >= start) & (tx.TX_TIME_DAYS < start + 7)
    return (in_week & (tx.TX_TIME_DAYS >= tx.CUSTOMER_ID.map(known_from))).to_numpy()


def week_rows(tx, start, delay_days):
    """The payments of the week from day `start`, known-fraud cards removed."""
    in_week = ((tx.TX_TIME_DAYS >= start) & (tx.TX_TIME_DAYS < start + 7)).to_numpy()
    return in_week & ~known_defrauded(tx, start, delay_days)


def card_precision_at_k(days, cards, labels, scores, k=100):
    frame = pd.DataFrame({"day": days, "card": cards, "y": labels, "s": scores})
    per_card = frame.groupby(["day", "card"]).agg(y=("y", "max"), s=("s", "max")).reset_index()
    tops = per_card.sort_values("s", ascending=False, kind="stable").groupby("day").head(k)
    return float(tops.groupby("day").y.sum().div(k).mean())


def metrics(frame, scores):
    labels = frame.TX_FRAUD.to_numpy()
    if labels.sum() == 0 or labels.sum() == len(labels):
        return {"auc_roc": float("nan"), "ap": float("nan"), "cp100": float("nan")}
    return {
        "auc_roc": float(roc_auc_score(labels, scores)),
        "ap": float(average_precision_score(labels, scores)),
        "cp100": card_precision_at_k(
            frame.TX_TIME_DAYS.to_numpy(), frame.CUSTOMER_ID.to_numpy(), labels, scores
        ),
    }


def river_online(tx, delay_days):
    """River's online logistic regression over the whole stream: each payment scored before any
    label from its future, each label learned `delay_days` after its payment."""
    from river import linear_model, preprocessing

    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    queue = deque()
    delay = delay_days * 86400
    seconds = (tx.TX_DATETIME - tx.TX_DATETIME.iloc[0]).dt.total_seconds().to_numpy()
    rows = tx[CLASSIC].to_numpy(dtype=float)
    labels = tx.TX_FRAUD.to_numpy()
    scores = np.empty(len(tx))
    for i in range(len(tx)):
        while queue and queue[0][0] <= seconds[i]:
            _, x, y = queue.popleft()
            model.learn_one(x, y)
        x = dict(zip(CLASSIC, rows[i]))
        scores[i] = model.predict_proba_one(x).get(True, 0.0)
        queue.append((seconds[i] + delay, x, bool(labels[i])))
    return scores


def batch_peers(tx, test_start, delay_days, train_days=7):
    """The two batch learners, fitted before the test week; scores for every payment from the
    test week on."""
    train_start = test_start - delay_days - train_days
    one_week = tx[(tx.TX_TIME_DAYS >= train_start) & (tx.TX_TIME_DAYS < train_start + train_days)]
    before_delay = tx[tx.TX_TIME_DAYS < test_start - delay_days]
    later = tx.TX_TIME_DAYS >= test_start
    lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    lr.fit(one_week[CLASSIC], one_week.TX_FRAUD)
    gb = HistGradientBoostingClassifier(random_state=0)
    gb.fit(before_delay[CLASSIC], before_delay.TX_FRAUD)
    scores = {}
    for name, model in (("logistic regression", lr), ("gradient boosting", gb)):
        column = np.full(len(tx), np.nan)
        column[later.to_numpy()] = model.predict_proba(tx.loc[later, CLASSIC])[:, 1]
        scores[name] = column
    return scores


def examples_peers(tx, directory, test):
    """The two batch learners on Vigil's own feature vectors (`vigil train --export-examples`),
    with its sampling weights; scored on the validation examples, which are the test week."""
    from xxhash import xxh3_64_intdigest

    training = pd.read_csv(f"{directory}/training.csv")
    validation = pd.read_csv(f"{directory}/validation.csv", dtype={"card": np.uint64})
    features = [
        c
        for c in training.columns
        if c not in ("is_fraud", "weight", "day", "card", "score") and training[c].notna().any()
    ]
    lr = make_pipeline(
        SimpleImputer(strategy="mean", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
    lr.fit(training[features], training.is_fraud, logisticregression__sample_weight=training.weight)
    gb = HistGradientBoostingClassifier(random_state=0)
    gb.fit(training[features], training.is_fraud, sample_weight=training.weight)
    first_day = (tx.TX_DATETIME.iloc[0].normalize() - pd.Timestamp("1970-01-01")).days
    card_of = {xxh3_64_intdigest(f"c{c}".encode()): c for c in tx.CUSTOMER_ID.unique()}
    frame = pd.DataFrame(
        {
            "TX_FRAUD": validation.is_fraud.to_numpy(),
            # Vigil's days count from the Unix epoch, the simulator's from its first day.
            "TX_TIME_DAYS": validation.day.to_numpy() - first_day,
            "CUSTOMER_ID": validation.card.map(card_of).to_numpy(),
        }
    )
    kept = set(zip(tx.TX_TIME_DAYS[test], tx.CUSTOMER_ID[test]))
    keep = np.array([(d, c) in kept for d, c in zip(frame.TX_TIME_DAYS, frame.CUSTOMER_ID)])
    frame = frame[keep]
    return {
        OWN_TREES: metrics(frame, validation.score.to_numpy()[keep]),
        "LR on vigil's examples": metrics(frame, lr.predict_proba(validation[features])[keep, 1]),
        "GB on vigil's examples": metrics(frame, gb.predict_proba(validation[features])[keep, 1]),
    }


def unseen_compromise(tx, delay_days, run_days=28):
    """The frauds of a compromised terminal (SynCCFD's scenario 2) paid before any fraud at that
    terminal in the last `run_days` was known: they are the terminal's ordinary sales, relabelled,
    so nothing a model can see, labels included, tells them from genuine ones."""
    unseen = np.zeros(len(tx), bool)
    seconds = (tx.TX_DATETIME - tx.TX_DATETIME.min()).dt.total_seconds().to_numpy()
    frauds = np.flatnonzero(tx.TX_FRAUD.to_numpy() == 1)
    scenario = tx.TX_FRAUD_SCENARIO.to_numpy()
    for rows in tx.iloc[frauds].groupby("TERMINAL_ID").indices.values():
        rows = frauds[rows]
        known = np.sort(seconds[rows] + delay_days * 86400)
        for i in rows[scenario[rows] == 2]:
            t = seconds[i]
            seen = np.searchsorted(known, t, "right") - np.searchsorted(known, t - run_days * 86400)
            unseen[i] = seen == 0
    return unseen


def ceiling(tx, test, delay_days):
    """What the test week allows: its unseen frauds, and the average precision of a ranking that
    puts every other fraud first and those among the genuine payments."""
    unseen = unseen_compromise(tx, delay_days)[test]
    fraud = tx.TX_FRAUD.to_numpy()[test]
    return int(unseen.sum()), average_precision_score(fraud, fraud * ~unseen)


def read_vigil(path, ids):
    scores = pd.read_csv(path, usecols=["transaction_id", "score"])
    scores["id"] = scores.transaction_id.str.extract(r"(\d+)$", expand=False).astype(np.int64)
    return scores.set_index("id").score.reindex(ids).to_numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="the directory `synccfd_data.py` wrote")
    parser.add_argument("--vigil", action="append", default=[], metavar="NAME=SCORES_CSV")
    parser.add_argument("--test-start", type=int, default=129, help="first day of the test week")
    parser.add_argument("--delay-days", type=int, default=7)
    parser.add_argument(
        "--examples", help="also fit the batch peers on `vigil train --export-examples` output"
    )
    parser.add_argument("--no-river", action="store_true", help="skip the online peer (slow)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--gate",
        metavar="NAME",
        help="exit 1 unless the Vigil run NAME beats every peer on the test week's average "
        "precision (the claim BENCHMARKS.md makes; CI checks it at a small scale)",
    )
    args = parser.parse_args()

    started = time.monotonic()
    tx = classic_features(pd.read_parquet(f"{args.data}/raw.parquet"), args.delay_days)
    print(f"features: {time.monotonic() - started:.0f} s", flush=True)
    scores = {}
    args.vigil_runs = [spec.split("=", 1) for spec in args.vigil]
    for name, path in args.vigil_runs:
        scores[name] = read_vigil(path, tx.TRANSACTION_ID)
    scores.update(batch_peers(tx, args.test_start, args.delay_days))
    print(f"batch peers: {time.monotonic() - started:.0f} s", flush=True)
    if not args.no_river:
        scores["river online LR"] = river_online(tx, args.delay_days)
        print(f"river: {time.monotonic() - started:.0f} s", flush=True)

    test = week_rows(tx, args.test_start, args.delay_days)
    result = {"dataset": json.load(open(f"{args.data}/dataset.json")), "test_week": {}, "weekly_ap": {}}
    print(f"\nTest week: days {args.test_start}-{args.test_start + 6}, "
          f"{test.sum()} payments, {tx.TX_FRAUD[test].sum()} frauds (known-fraud cards removed)")
    print(f"  {'method':<28} {'AUC-ROC':>8} {'AP':>8} {'CP@100':>8}")
    for name, s in scores.items():
        m = metrics(tx[test], s[test])
        result["test_week"][name] = m
        print(f"  {name:<28} {m['auc_roc']:8.4f} {m['ap']:8.4f} {m['cp100']:8.4f}")

    if args.examples:
        for name, m in examples_peers(tx, args.examples, test).items():
            result["test_week"][name] = m
            print(f"  {name:<28} {m['auc_roc']:8.4f} {m['ap']:8.4f} {m['cp100']:8.4f}")
    if "TX_FRAUD_SCENARIO" in tx:
        unseen, best = ceiling(tx, test, args.delay_days)
        result["ceiling_ap"] = best
        print(f"  {unseen} frauds at terminals in their first, unlabelled days of compromise; "
              f"with every other fraud ranked first, AP {best:.4f}")

    print("\nAverage precision week by week (known-fraud cards removed)")
    online = {n: s for n, s in scores.items() if not np.isnan(s).any()}
    print("  week " + "".join(f"{n[:14]:>16}" for n in online))
    for week in range(tx.TX_TIME_DAYS.max() // 7 + 1):
        rows = week_rows(tx, 7 * week, args.delay_days)
        aps = [metrics(tx[rows], s[rows])["ap"] for s in online.values()]
        for n, ap in zip(online, aps):
            result["weekly_ap"].setdefault(n, []).append(ap)
        print(f"  {week + 1:>4} " + "".join(f"{ap:16.4f}" for ap in aps))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.gate:
        ours = [n for n, _ in args.vigil_runs] + [OWN_TREES]
        return gate(result["test_week"], args.gate, ours)


def gate(test_week, name, ours):
    """1 when a peer's average precision is at least that of Vigil's run `name`."""
    ours_ap = test_week[name]["ap"]
    beaten_by = [
        f"{peer} ({m['ap']:.4f})"
        for peer, m in test_week.items()
        if peer not in ours and not m["ap"] < ours_ap
    ]
    if beaten_by:
        print(f"\nFAILED: {name}'s average precision {ours_ap:.4f} does not beat " + ", ".join(beaten_by))
        return 1
    print(f"\n{name}'s average precision {ours_ap:.4f} beats every peer")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Trains perpetual's PerpetualBooster (its Rust core, through its Python package) on the
examples that `vigil train --export-examples DIR` wrote, and compares it with Vigil's boosted
trees on the same validation examples (their `score` column), both measured by scikit-learn:
AUC-ROC and average precision, and the training time. See BENCHMARKS.md for the commands.

    pip install perpetual scikit-learn pandas
    python models/compare/against_perpetual.py DIR [--budget 0.5 --budget 1.0] [--threads 2]
        [--fraud-share 0.1]
    python models/compare/against_perpetual.py --synthetic    # perpetual alone, on sklearn's data
"""

import argparse
import time

import pandas as pd
from perpetual import PerpetualBooster
from sklearn.metrics import average_precision_score, roc_auc_score

NOT_FEATURES = ("is_fraud", "weight", "day", "card", "score")


def report(name, labels, scores, seconds):
    took = "" if seconds is None else f", trained in {seconds:.1f} s"
    print(
        f"{name}: AUC-ROC {roc_auc_score(labels, scores):.4f}, "
        f"average precision {average_precision_score(labels, scores):.4f}{took}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dir", nargs="?", help="where `vigil train --export-examples` wrote its CSV files"
    )
    parser.add_argument(
        "--budget", type=float, action="append", help="perpetual's budget, repeatable [0.5, 1.0]"
    )
    parser.add_argument("--threads", type=int, default=2, help="perpetual's threads [2, as Vigil's]")
    parser.add_argument(
        "--fraud-share",
        type=float,
        help="train perpetual on every fraud and a sample of the genuine rows (seed 1), "
        "unweighted, so that frauds are this share of them",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="instead: perpetual on scikit-learn's make_classification at 2, 10 and 50 %% "
        "positives, to tell its trouble with imbalance from anything in our data",
    )
    args = parser.parse_args()
    if args.synthetic:
        return synthetic(args)
    if not args.dir:
        parser.error("give the directory of the examples, or --synthetic")

    training = pd.read_csv(f"{args.dir}/training.csv")
    validation = pd.read_csv(f"{args.dir}/validation.csv")
    features = [c for c in training.columns if c not in NOT_FEATURES]
    print(
        f"{len(training)} training examples ({int(training.is_fraud.sum())} frauds), "
        f"{len(validation)} validation ({int(validation.is_fraud.sum())} frauds), "
        f"{len(features)} features",
        flush=True,
    )
    report("vigil (the score column)", validation.is_fraud, validation.score, None)
    weights = training.weight
    if args.fraud_share:
        training = with_fraud_share(training, args.fraud_share)
        weights = None
        print(f"perpetual trains on {len(training)} rows, unweighted", flush=True)
    for budget in args.budget or [0.5, 1.0]:
        model = PerpetualBooster(objective="LogLoss", budget=budget, num_threads=args.threads)
        started = time.perf_counter()
        model.fit(training[features], training.is_fraud, sample_weight=weights)
        seconds = time.perf_counter() - started
        # Log-odds: its probabilities saturate (ties at 0 and 1 cost it AUC).
        scores = model.predict(validation[features])
        report(f"perpetual, budget {budget}", validation.is_fraud, scores, seconds)


def synthetic(args):
    from sklearn.datasets import make_classification

    for positives in (0.02, 0.10, 0.50):
        x, y = make_classification(
            n_samples=50_000, n_features=20, weights=[1 - positives], random_state=0
        )
        for budget in args.budget or [0.5]:
            model = PerpetualBooster(objective="LogLoss", budget=budget, num_threads=args.threads)
            model.fit(x[:40_000], y[:40_000])
            trees = model.number_of_trees
            report(f"{positives:.0%} positives, budget {budget}, {trees} trees", y[40_000:],
                   model.predict(x[40_000:]), None)


def with_fraud_share(training, share):
    frauds = training[training.is_fraud == 1]
    genuine = training[training.is_fraud == 0]
    wanted = min(len(genuine), int(len(frauds) * (1 - share) / share))
    return pd.concat([frauds, genuine.sample(n=wanted, random_state=1)])


if __name__ == "__main__":
    main()

"""Splits a data set's transactions and labels as the live service's topics would hold them:
by the producer's partitioner (librdkafka's default, `consistent_random`: CRC-32 of the key,
`card_id`, modulo the partitions), one pair of files a partition. Backtesting each part alone
and joining the scores shows what the live service decides today, with one engine per
partition keeping what it learns to itself (`vigil backtest --partitions N` shares the model,
merchants and customers between the partitions, as the live service is to).

    python models/quality/partitions.py data/synccfd 8          # data/synccfd/partitions-8/
    for i in $(seq 0 7); do p=data/synccfd/partitions-8/$i
        vigil backtest --partitions 1 --transactions $p/transactions.ndjson --labels $p/labels.ndjson --out $p/scores.csv
    done
    (echo transaction_id,score; tail -qn +2 data/synccfd/partitions-8/*/scores.csv | cut -d, -f1,2) \\
        > data/synccfd/scores-8.csv
"""

import argparse
import os
import re
import zlib

CARD = re.compile(r'"card_id":"([^"]*)"')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="holds transactions.ndjson and labels.ndjson")
    parser.add_argument("partitions", type=int)
    args = parser.parse_args()
    parts = [f"{args.dir}/partitions-{args.partitions}/{i}" for i in range(args.partitions)]
    for part in parts:
        os.makedirs(part, exist_ok=True)
    for name in ("transactions", "labels"):
        outs = [open(f"{part}/{name}.ndjson", "w") for part in parts]
        with open(f"{args.dir}/{name}.ndjson") as lines:
            for line in lines:
                key = CARD.search(line).group(1).encode()
                outs[zlib.crc32(key) % args.partitions].write(line)
        for out in outs:
            out.close()


if __name__ == "__main__":
    main()

"""The `bpe336` command: `bpe336 train`, `bpe336 encode`, `bpe336 bench`.

    bpe336 train corpus.txt --vocab-size 10000 --special-token '<|endoftext|>' --out tok/
"""

from __future__ import annotations

import argparse
import sys


# ---------------------------------------------------------------------------------------------
# bpe336 train
# ---------------------------------------------------------------------------------------------


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a BPE tokenizer on text files")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# bpe336 encode
# ---------------------------------------------------------------------------------------------


def add_encode_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode a text file to a token array")
    p.set_defaults(run=run_encode)


def run_encode(args: argparse.Namespace) -> int:
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# bpe336 bench
# ---------------------------------------------------------------------------------------------


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure encoding throughput and compression")
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    raise NotImplementedError


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpe336", description="Byte-level BPE tokenizer: train, encode, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_encode_parser(sub)
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

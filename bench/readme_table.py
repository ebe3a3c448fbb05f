#!/usr/bin/python3
"""Copy the summary `make bench` wrote (build/bench-summary.md) into README.md, between the
markers <!-- bench-summary begin --> and <!-- bench-summary end -->; nothing else in the
README changes.

  /usr/bin/python3 bench/readme_table.py [--summary build/bench-summary.md] [--readme README.md]
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench-summary begin -->", "<!-- bench-summary end -->"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--summary", type=Path, default=REPO / "build" / "bench-summary.md")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = ap.parse_args()
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"readme_table: {args.readme} lacks the markers {BEGIN} ... {END}",
              file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(head + BEGIN + "\n" + args.summary.read_text() + END + tail)
    print(f"readme_table: {args.readme} updated from {args.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

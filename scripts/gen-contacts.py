#!/usr/bin/env python3
"""Writes a contacts CSV for `relay contacts import`: N rows of North American numbers in mixed
formats (E.164, national with punctuation, dotted, bare digits), a few invalid rows, and names.

    scripts/gen-contacts.py ROWS [SEED] > contacts.csv

Deterministic for a given seed, so import timings are comparable between runs.
"""
import random
import sys

FIRST = ["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn"]
LAST = ["Morgan", "Lee", "Smith", "Nguyen", "Garcia", "Patel", "Brown", "Martin", "Roy", "Chen"]
AREAS = [416, 647, 437, 905, 289, 604, 778, 236, 514, 438, 212, 646, 415, 312, 617]


def formatted(area: int, exchange: int, line: int, style: int) -> str:
    if style == 0:
        return f"+1{area}{exchange}{line:04d}"
    if style == 1:
        return f"({area}) {exchange}-{line:04d}"
    if style == 2:
        return f"{area}.{exchange}.{line:04d}"
    return f"1 {area} {exchange} {line:04d}"


def main() -> None:
    rows = int(sys.argv[1])
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    out = sys.stdout
    out.write("first_name,last_name,phone,source\n")
    for i in range(rows):
        if i % 1000 == 999:
            phone = "not a number"
        else:
            # Distinct numbers: spread i over area codes and exchanges 200..999.
            area = AREAS[i % len(AREAS)]
            rest = i // len(AREAS)
            exchange = 200 + (rest // 10_000) % 800
            line = rest % 10_000
            phone = formatted(area, exchange, line, rng.randrange(4))
        out.write(f"{rng.choice(FIRST)},{rng.choice(LAST)},{phone},gen\n")


if __name__ == "__main__":
    main()

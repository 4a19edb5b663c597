"""Print the mutation score of a mutmut run and the mutants it left alive.

Usage: mutation_score.py RESULTS STATS_JSON EQUIVALENT_MD

A survivor listed in EQUIVALENT_MD (a line starting with ``- `NAME` ``, the
reason after it) behaves like the original for every input the code can get,
so it is counted apart; every other survivor is printed. Exits 1 when the
score is below the target, 90 % of all mutants killed.
"""

import json
import re
import sys

TARGET = 0.90


def main(results_path, stats_path, equivalent_path):
    with open(stats_path, encoding="utf-8") as handle:
        stats = json.load(handle)
    with open(results_path, encoding="utf-8") as handle:
        alive = [line.strip().split(": ", 1) for line in handle if ": " in line]
    with open(equivalent_path, encoding="utf-8") as handle:
        equivalent = set(re.findall(r"^- `([^`]+)`", handle.read(), flags=re.MULTILINE))
    killed = stats["killed"] + stats["timeout"]
    total = stats["total"]
    undocumented = [(name, status) for name, status in alive if name not in equivalent]
    score = killed / total
    print(
        f"mutants: {total}; killed: {killed} ({score:.1%}); survived: {stats['survived']}; "
        f"no tests: {stats['no_tests']}; listed as equivalent: {len(equivalent)}"
    )
    print(f"killed of the non-equivalent: {killed / (total - len(equivalent)):.1%}")
    for name, status in undocumented:
        print(f"  {status:<12} {name}")
    return 0 if score >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""The exact McNemar test for two evaluations scored on the same items, and its report.

Both benchmarks (eval_gpt4tools, eval_commonsense) decide for each item whether a run got it right;
this module only compares two such id → right maps. Two rows' accuracies on the same items can differ
by a handful of items by chance. Scored on the same items, the evidence is in the discordant ones:
those one row gets right and the other does not. The exact McNemar test asks whether that split is
further from 50/50 than chance allows (a two-sided binomial test on the discordant items), which is far
more sensitive than comparing two rates as if they came from independent samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic import write_text_atomic


class NoCommonItemsError(ValueError):
    """Two runs to be paired scored no item in common."""


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: binomial(n = only_a + only_b, 1/2) at least as uneven as seen."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedResult:
    a: str
    b: str
    metric: str
    n_items: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)


def compare_pair(a: str, rights_a: dict, b: str, rights_b: dict, metric: str = "SR") -> PairedResult:
    common = rights_a.keys() & rights_b.keys()
    if not common:
        raise NoCommonItemsError(f"{a} and {b} share no scored items: compare runs made on the same test items.")
    pairs = [(rights_a[i], rights_b[i]) for i in common]
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    both = sum(x and y for x, y in pairs)
    return PairedResult(a, b, metric, len(common), both, only_a, only_b, len(common) - both - only_a - only_b,
                        mcnemar_exact_p(only_a, only_b))


def markdown_pairs(results: list[PairedResult]) -> str:
    lines = ["| A | B | metric | items | both right | only A | only B | neither | McNemar p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.a} | {r.b} | {r.metric} | {r.n_items} | {r.both} | {r.only_a} | {r.only_b} | {r.neither} | {r.p_value:.3g} |")
    return "\n".join(lines) + "\n"


def write_pairs(results: list[PairedResult], out: Path) -> None:
    """`out`.json and `out`.md, each written whole (temporary file, then rename)."""
    write_text_atomic(Path(out).with_suffix(".json"), json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    write_text_atomic(Path(out).with_suffix(".md"), markdown_pairs(results))


def report_pairs(results: list[PairedResult], out: Path | None) -> None:
    """Print the table; with `out`, also write it (the `compare` command of both benchmarks)."""
    print(markdown_pairs(results))
    if out is not None:
        write_pairs(results, out)
        print(f"Written to {out}.json and {out}.md")

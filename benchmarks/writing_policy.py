"""What the shared XMP fields would say, before and after the writing policy, and how often
it is wrong: on the shipped gallery's rows of the test split (tagged by the shipped bundle,
with their ground truth), so nothing is tagged again.

    python benchmarks/writing_policy.py [--split test] [--date-max-width 40]

"Before" is `artylyze write --xmp` as it was (creator suggested by default at 0.8, the year
written whatever its interval, `--min-score` ignored where `<task>_confident` exists);
"after" is artylyze.metadata.policy with the defaults of `artylyze write`.
"""

from __future__ import annotations

import argparse

import pyarrow.parquet as pq

from artylyze.index.store import DEFAULT_GALLERY_DIR
from artylyze.metadata import policy
from artylyze.options import Write


def before(row: dict, task: str) -> bool:
    if row.get(f"{task}_confident") is not None:
        return bool(row[f"{task}_confident"])
    return row[f"{task}_score"] >= Write.min_score.default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--date-max-width", type=float, default=Write.date_max_width.default)
    args = ap.parse_args()
    rows = [r for r in pq.read_table(DEFAULT_GALLERY_DIR / "rows.parquet").to_pylist()
            if r["split"] == args.split]
    rows = [{**r, "year": r["year_estimate"]} for r in rows]  # the gallery's name for it
    m, cmin = Write.min_score.default, Write.creator_min_score.default
    fields = {
        "AOStylePeriod": (lambda r: before(r, "style"), lambda r: policy.passes(r, "style", m),
                          lambda r: r["style"] == r["true_style"], "true_style"),
        "AOCreator": (lambda r: before(r, "artist") and r["artist_score"] >= cmin,
                      lambda r: policy.creator(r, m, cmin, suggest=False),
                      lambda r: r["artist"] == r["true_artist"], "true_artist"),
        "AOCreator --suggest-creator": (
            lambda r: before(r, "artist") and r["artist_score"] >= cmin,
            lambda r: policy.creator(r, m, cmin, suggest=True),
            lambda r: r["artist"] == r["true_artist"], "true_artist"),
        "AODateCreated (within 10 y)": (
            lambda r: r["year"] is not None,
            lambda r: policy.date_confident(r, m, args.date_max_width),
            lambda r: abs(r["year"] - float(r["true_year"])) <= 10, "true_year"),
        "AOCircaDateCreated (holds year)": (
            lambda r: r["year_low"] is not None, lambda r: policy.passes(r, "period", m),
            lambda r: r["year_low"] <= float(r["true_year"]) <= r["year_high"], "true_year"),
    }
    print(f"{len(rows)} gallery rows of the {args.split} split; written (wrong / with truth)")
    print(f"{'field':34} {'before':>22} {'after':>22}")
    for name, (old, new, right, truth) in fields.items():
        cells = []
        for rule in (old, new):
            chosen = [r for r in rows if rule(r)]
            known = [r for r in chosen if r[truth] not in (None, "")]
            wrong = sum(not right(r) for r in known)
            cells.append(f"{len(chosen)} ({wrong}/{len(known)} wrong)")
        print(f"{name:34} {cells[0]:>22} {cells[1]:>22}")
    unsure = [r for r in rows if not r["period_confident"]]
    print(f"AODateCreated on rows whose period is not confident: before "
          f"{sum(r['year'] is not None for r in unsure)} of {len(unsure)}, after "
          f"{sum(policy.date_confident(r, m, args.date_max_width) for r in unsure)}")


if __name__ == "__main__":
    main()

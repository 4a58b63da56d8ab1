"""Rebuild this folder from the community lists as DFER-CLIP / Former-DFER distribute them.

The full lists are 9 MB; the tests need only their format, their fold structure and every
label. Kept, in file order:

- DFEW and MAFW: from each fold's test list, the first ``PER_LABEL`` clips of every label;
  each fold's train list restricted to the clips kept (so train_k stays the complement of
  test_k within the kept clips);
- FERV39K: the first ``PER_LABEL`` clips of every label of the train and of the test list,
  and in each a clip of another scene with the first clip's emotion and number (FERV39K's
  ``emotion/number`` is not unique: the scene is part of a clip's id).

    python tests/data/lists/make_fixture.py [--src ../shared/fixtures/lists]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_LABEL = 4


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def _first_per_label(lines: list[str], n: int) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for ln in lines:
        label = ln.split()[-1]
        if seen.get(label, 0) < n:
            seen[label] = seen.get(label, 0) + 1
            out.append(ln)
    return out


def _clip(line: str) -> str:
    return line.split()[0].rstrip("/").rsplit("/", 1)[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=HERE.parents[2].parent / "shared" / "fixtures" / "lists")
    src = p.parse_args().src
    for corpus in ("DFEW", "MAFW"):
        tests = {k: _first_per_label(_lines(src / f"{corpus}_set_{k}_test.txt"), PER_LABEL) for k in range(1, 6)}
        kept = {_clip(ln) for lines in tests.values() for ln in lines}
        for k in range(1, 6):
            (HERE / f"{corpus}_set_{k}_test.txt").write_text("\n".join(tests[k]) + "\n")
            train = [ln for ln in _lines(src / f"{corpus}_set_{k}_train.txt") if _clip(ln) in kept]
            (HERE / f"{corpus}_set_{k}_train.txt").write_text("\n".join(train) + "\n")
    for part in ("train", "test"):
        full = _lines(src / f"FERV39K_{part}.txt")
        lines = _first_per_label(full, PER_LABEL)
        # and the first clip's namesake in another scene: emotion/number is not unique
        first = lines[0].split()[0].rsplit("/", 2)
        lines.append(next(ln for ln in full if ln.split()[0].endswith(f"/{first[1]}/{first[2]}") and ln != lines[0]))
        (HERE / f"FERV39K_{part}.txt").write_text("\n".join(lines) + "\n")
    shutil.copyfile(src / "LICENSE-lists", HERE / "LICENSE-lists")


if __name__ == "__main__":
    main()

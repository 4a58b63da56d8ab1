"""Rebuild this folder's FER+ fixture from the real corpus: both forms, from the same 24 faces.

    python tests/data/ferplus/make_fixture.py [--source ../shared/ferplus]

Writes, beside this script:

- ``FER2013Train/``, ``FER2013Valid/``: the PNGs of the faces named in ``TRAINING`` and
  ``PUBLIC_TEST`` copied byte for byte, and ``label.csv`` with their rows of the real
  ``label.csv``, verbatim and in the real order (the form FER+'s generator writes);
- ``kaggle/fer2013.csv`` (``emotion,pixels,Usage``) and ``kaggle/fer2013new.csv``
  (``Usage,Image name,<10 vote columns>``): one row per entry of ``TRAINING`` then
  ``PUBLIC_TEST``. A named row holds that face's pixels and its real votes; a ``None``
  entry is a row FER+ gives no name (empty ``Image name``), holding the pixels of a real
  face that is not in the fixture, so that a loader that reads such a row is caught.

The row order makes ``Image name`` equal ``fer%07d.png % row`` for the first rows only and
then drift, as in the real ``fer2013new.csv``; rows are placed so that joining by row
index would give some rows the name (and the votes) of another face of the fixture.

Chosen from the real ``label.csv`` for what the tests need: ties for the most votes (two-
and three-way), images whose most votes are ``unknown`` or ``NF`` (one with no emotion vote
at all), emotions tied with ``unknown`` (kept), the one row whose votes sum to 9, and
clear faces of most classes. Only the Train and Valid splits are used.

The ``emotion`` column of ``fer2013.csv`` is not FER2013's original label (not at hand
here, and read by no FER+ loader): it is the first FER+ class with the most votes, as a
FER2013 code (contempt, unknown and NF, which FER2013 lacks, as 6 = neutral). An unnamed
row's votes are written as 10 ``NF``.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[3] / "shared" / "ferplus"

# Kaggle rows, in order: a face's number (fer%07d.png) or None for a row FER+ leaves unnamed
TRAINING = [0, 1, None, 3, 4, None, 5, None, 7, 10, 26, None, 60, 95, 183, None, 196, 459, None, 1117, 10406,
            None, 10628, None]
PUBLIC_TEST = [28638, 28639, None, 28641, 28642, None, 28644, 28753, None, 28812, 31788, None]
# the pixels of the unnamed rows, in order: real faces left out of the fixture
UNNAMED_PIXELS = {"Training": [2, 6, 8, 11, 13, 14, 22, 27], "PublicTest": [28640, 28643, 28645, 28648]}
FOLDER = {"Training": "FER2013Train", "PublicTest": "FER2013Valid"}
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown",
                "NF")
# FER+ class -> FER2013 code (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral)
FER2013_CODE = {"neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0, "disgust": 1, "fear": 2}


def name(number: int) -> str:
    return f"fer{number:07d}.png"


def pixels(png: Path) -> str:
    with Image.open(png) as img:
        if img.mode != "L" or img.size != (48, 48):
            raise SystemExit(f"{png}: expected a 48x48 grey image, found {img.mode} {img.size}")
        return " ".join(str(v) for v in np.asarray(img, np.uint8).reshape(-1))


def build(source: Path, out: Path) -> None:
    plan = {"Training": TRAINING, "PublicTest": PUBLIC_TEST}
    label_rows: dict[str, dict[str, str]] = {}
    for usage, folder in FOLDER.items():
        wanted = {name(n) for n in plan[usage] if n is not None}
        text = (source / folder / "label.csv").read_text()
        rows = {line.split(",", 1)[0]: line for line in text.splitlines() if line.strip()}
        missing = sorted(wanted - set(rows))
        if missing:
            raise SystemExit(f"{source / folder / 'label.csv'}: no row for {missing}")
        label_rows[usage] = rows
        dst = out / folder
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        kept = [line for key, line in rows.items() if key in wanted]  # the real file's order
        (dst / "label.csv").write_text("".join(line + "\n" for line in kept))
        for n in sorted(wanted):
            shutil.copyfile(source / folder / n, dst / n)

    fer, new = io.StringIO(), io.StringIO()
    fer_w, new_w = csv.writer(fer, lineterminator="\n"), csv.writer(new, lineterminator="\n")
    fer_w.writerow(["emotion", "pixels", "Usage"])
    new_w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
    row = 0
    for usage, entries in plan.items():
        spare = iter(UNNAMED_PIXELS[usage])
        for n in entries:
            if n is None:
                png = source / FOLDER[usage] / name(next(spare))
                votes = [0] * 9 + [10]
                image_name = ""
            else:
                png = out / FOLDER[usage] / name(n)
                cells = next(csv.reader([label_rows[usage][name(n)]]))
                votes = [int(c) for c in cells[2:]]
                image_name = name(n)
            top = VOTE_COLUMNS[int(np.argmax(votes))]
            fer_w.writerow([FER2013_CODE.get(top, 6), pixels(png), usage])
            new_w.writerow([usage, image_name, *votes])
            row += 1
    kaggle = out / "kaggle"
    kaggle.mkdir(exist_ok=True)
    (kaggle / "fer2013.csv").write_text(fer.getvalue())
    (kaggle / "fer2013new.csv").write_text(new.getvalue())
    shutil.copyfile(source / "LICENSE-FERPlus.md", out / "LICENSE-FERPlus.md")

    # the quirk the fixture exists to show: names follow the row index only at first
    named = [(i, name(n)) for i, n in enumerate(TRAINING + PUBLIC_TEST) if n is not None]
    assert named[0] == (0, name(0)) and any(nm != name(i) for i, nm in named)
    every = {nm for _, nm in named}
    assert any(nm != name(i) and name(i) in every for i, nm in named), "no row that a by-index join misnames"
    print(f"wrote {out}: {len(named)} faces, {row} Kaggle rows ({row - len(named)} unnamed)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the real FER+ folders (default %(default)s)")
    p.add_argument("--out", type=Path, default=HERE, help="where to write (default: this folder)")
    args = p.parse_args()
    build(args.source, args.out)


if __name__ == "__main__":
    main()

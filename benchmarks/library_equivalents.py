"""dfer's hand-written code against the well-kept libraries that do the same job.

Three places where dfer does by hand what a library also does, each timed against the
library and judged on what dfer needs of it besides speed; prints one JSON object:

- ``beta``: MIDAS's λ ~ Beta(α, α) (:func:`dfer.mixing.sample_lam`) against
  ``numpy.random.Generator.beta`` and ``torch.distributions.Beta``: draws per second for a
  batch's λ (64 draws, the cost per training step) and for 1,000,000 draws, a
  Kolmogorov-Smirnov test against scipy's Beta, and what a resumed run needs: draws from an
  explicit generator whose state a checkpoint holds as a tensor.
- ``csv``: a manifest of ``--rows`` clips (path, seven vote columns, fold) read into columns
  by dfer (:func:`dfer.data.corpora.columns.read_columns`) against pandas.read_csv (C and
  pyarrow engines), pyarrow.csv.read_csv, numpy.loadtxt and the csv module; then each is
  given the three bad rows dfer refuses (a row with a cell too few, a vote that is a word,
  a negative vote count) and judged: does it refuse the file, and does its message name the
  line? (The negative count is refused by the manifest reader,
  :func:`dfer.data.corpora.manifest.load_manifest`, after the columns are read.)
- ``decode``: the FER+ PNG faces of ``tests/data`` and JPEG frames made from the test video
  read by :func:`dfer.data.decode.read_image` against ``torchvision.io.decode_image`` (of
  the file's bytes) and ``torchvision.io.read_image``: frames per second, whether the pixels
  are the same, and what each does with a truncated, empty or random file and a 16-bit PNG.

Times are the best of ``--repeat`` runs (on shared cores the best is the least disturbed);
compare the ratios, not the seconds. pandas and pyarrow are not dfer dependencies: where
they are not importable their rows say so. Run::

    .venv/bin/python benchmarks/library_equivalents.py [--rows 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import timeit
import warnings
from pathlib import Path

import numpy as np
import torch

from dfer.data.corpora.columns import read_columns
from dfer.data.corpora.manifest import load_manifest
from dfer.data.decode import read_image, read_video_frames
from dfer.errors import DfeError
from dfer.mixing import sample_lam

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")


def best_of(fn, repeat: int) -> float:
    """The shortest of ``repeat`` timed calls of ``fn``, in seconds."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


# ---------------------------------------------------------------------------- Beta(α, α)
def beta(repeat: int, alpha: float = 0.4) -> dict:
    from scipy import stats

    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    dist = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
    samplers = {"dfer": lambda n: sample_lam(alpha, n, g), "numpy": lambda n: rng.beta(alpha, alpha, n),
                "torch.distributions": lambda n: dist.sample((n,))}
    out = {}
    for name, draw in samplers.items():
        step = best_of(lambda: [draw(64) for _ in range(200)], repeat) / 200
        bulk = best_of(lambda: draw(1_000_000), repeat)
        x = np.asarray(draw(200_000), np.float64)
        out[name] = {"batch_of_64_us": round(step * 1e6, 1), "million_s": round(bulk, 4),
                     "ks_p": round(float(stats.kstest(x, stats.beta(alpha, alpha).cdf).pvalue), 3)}
    # small α puts the mass at 0 and 1, where a Gamma ratio can turn into 0/0
    small = {"dfer": lambda n: sample_lam(0.05, n, g, dtype=torch.float64),
             "numpy": lambda n: rng.beta(0.05, 0.05, n),
             "torch.distributions": lambda n: torch.distributions.Beta(torch.tensor(0.05, dtype=torch.float64),
                                                                     torch.tensor(0.05, dtype=torch.float64)).sample((n,))}
    for name, draw in small.items():
        x = np.asarray(draw(1_000_000), np.float64)
        out[name]["alpha_0.05_nan_of_a_million"] = int(np.isnan(x).sum())
    for name in ("numpy", "torch.distributions"):
        out[name]["time_per_batch_vs_dfer"] = round(out[name]["batch_of_64_us"] / out["dfer"]["batch_of_64_us"], 2)
        out[name]["time_per_million_vs_dfer"] = round(out[name]["million_s"] / out["dfer"]["million_s"], 2)
    out["dfer"]["generator"] = "explicit torch.Generator, state a uint8 tensor saved in the checkpoint"
    out["numpy"]["generator"] = "explicit numpy Generator, state a dict of Python ints (not a tensor)"
    out["torch.distributions"]["generator"] = "none: draws from torch's global stream, which dropout also uses"
    return out


# ---------------------------------------------------------------------------- CSV
def write_manifest(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    votes = rng.multinomial(10, [0.25, 0.17, 0.26, 0.15, 0.1, 0.03, 0.04], size=rows)
    fold = rng.integers(1, 6, size=rows)
    with open(path, "w", newline="") as f:
        f.write("path," + ",".join(CLASSES) + ",fold\n")
        f.writelines(f"clips/{i:07d}," + ",".join(map(str, v)) + f",{k}\n"
                     for i, (v, k) in enumerate(zip(votes.tolist(), fold.tolist())))


def _spoil(good: Path, out: Path, row: int, how: str) -> int:
    """A copy of ``good`` with data row ``row`` spoilt; returns the spoilt line's number."""
    lines = good.read_text().splitlines(keepends=True)
    cells = lines[row].rstrip("\n").split(",")
    if how == "cells":
        cells = cells[:-1]
    elif how == "word":
        cells[2] = "three"
    else:
        cells[2] = "-3"
    lines[row] = ",".join(cells) + "\n"
    out.write_text("".join(lines))
    return row + 1


def _readers() -> dict:
    dtypes = {c: "float32" for c in CLASSES}
    readers = {"dfer": lambda p: read_columns(p, numeric=lambda h: set(CLASSES) | {"fold"})}
    try:
        import pandas as pd

        readers["pandas (C engine)"] = lambda p: pd.read_csv(p, dtype={**dtypes, "path": str, "fold": "int64"})
        readers["pandas (pyarrow engine)"] = lambda p: pd.read_csv(p, dtype={**dtypes, "path": str, "fold": "int64"},
                                                                   engine="pyarrow")
    except ImportError:
        pass
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        types = {**{c: pa.float32() for c in CLASSES}, "path": pa.string(), "fold": pa.int64()}
        readers["pyarrow.csv"] = lambda p: pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(column_types=types))
    except ImportError:
        pass
    readers["numpy.loadtxt"] = lambda p: (np.loadtxt(p, delimiter=",", skiprows=1, usecols=range(1, 9),
                                                     dtype=np.float32),
                                          np.loadtxt(p, delimiter=",", skiprows=1, usecols=0, dtype=str))
    readers["csv module"] = _csv_module
    return readers


def _csv_module(p: Path):
    import csv

    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    cols = list(zip(*body))
    return {h: (np.array(c, np.float32) if h != "path" else np.array(c)) for h, c in zip(header, cols)}


def csv_readers(rows: int, repeat: int, tmp: Path) -> dict:
    good = tmp / "manifest.csv"
    write_manifest(good, rows)
    readers = _readers()
    out = {"rows": rows, "file_mb": round(good.stat().st_size / 2**20, 2),
           "missing": [n for n in ("pandas", "pyarrow") if not any(k.startswith(n) for k in readers)]}
    for name, read in readers.items():
        out[name] = {"seconds": round(best_of(lambda: read(good), repeat), 4)}
    for name in readers:
        out[name]["time_vs_dfer"] = round(out[name]["seconds"] / out["dfer"]["seconds"], 2)
    row = rows // 2
    for how in ("cells", "word", "negative"):
        bad = tmp / f"bad-{how}.csv"
        line = _spoil(good, bad, row, how)
        for name, read in readers.items():
            if name == "dfer":
                read = lambda p: load_manifest(p)  # noqa: E731 - the negative vote is the manifest's check
            try:
                read(bad)
                verdict = "accepted"
            except Exception as e:  # noqa: BLE001 - each library raises its own kind
                text = " ".join(str(e).split())
                said = {int(n) for n in re.findall(r"(?:\bline|\brow|\bposition|\.csv:)\s*#?(\d+)", text)}
                where = "naming the line" if line in said else \
                    "naming a 0-based row" if {line - 1, line - 2} & said else "no line"
                verdict = f"refused, {where}: {text[:110]}"
            out[name][f"bad_{how}"] = verdict
        out[f"bad_{how}_line"] = line
    return out


# ---------------------------------------------------------------------------- image decoding
def _jpeg_frames(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    video = ROOT / "tests" / "data" / "videos" / "single_face.mp4"
    frames = read_video_frames(video, np.arange(count))
    paths = []
    for i, frame in enumerate(frames):
        paths.append(folder / f"{i:03d}.jpg")
        Image.fromarray(frame).save(paths[-1], quality=90)
    return paths


def _bad_images(folder: Path, png: Path, jpeg: Path) -> dict[str, Path]:
    from PIL import Image

    data, jdata = png.read_bytes(), jpeg.read_bytes()
    bad = {"truncated PNG": data[: len(data) // 2], "truncated JPEG": jdata[: len(jdata) // 2], "empty": b"",
           "random bytes": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))}
    paths = {}
    for i, (name, content) in enumerate(bad.items()):
        paths[name] = folder / f"bad{i}{'.jpg' if 'JPEG' in name else '.png'}"
        paths[name].write_bytes(content)
    grey = np.asarray(Image.open(png))
    paths["16-bit grey PNG"] = folder / "sixteen.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(paths["16-bit grey PNG"])
    return paths


def decoders(repeat: int, tmp: Path) -> dict:
    import torchvision
    from torchvision.io import ImageReadMode, decode_image, read_file

    def tv_decode(p):
        return decode_image(read_file(str(p)), mode=ImageReadMode.RGB)

    def tv_read(p):
        return torchvision.io.read_image(str(p), mode=ImageReadMode.RGB)

    def ours(p):
        return read_image(str(p))

    pngs = sorted((ROOT / "tests" / "data" / "ferplus").rglob("*.png"))
    jpgs = _jpeg_frames(tmp, 16)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        tv_decode(pngs[0])
    deprecated = [str(w.message) for w in said if issubclass(w.category, DeprecationWarning)]
    out = {"torchvision": torchvision.__version__, "torchvision_says": deprecated[0][:160] if deprecated else None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # said once above
        out.update(_decode_arms(repeat, tmp, pngs, jpgs, ours, tv_decode, tv_read))
    return out


def _decode_arms(repeat: int, tmp: Path, pngs, jpgs, ours, tv_decode, tv_read) -> dict:
    out = {}
    for kind, files in (("png", pngs), ("jpeg", jpgs)):
        h, w = ours(files[0]).shape[:2]
        res = {"files": len(files), "size": f"{w}x{h}"}
        for name, fn in (("dfer", ours), ("torchvision.decode_image", tv_decode), ("torchvision.read_image", tv_read)):
            s = best_of(lambda: [fn(p) for p in files], repeat)
            res[name] = {"frames_per_s": round(len(files) / s, 1)}
            if name != "dfer":
                diff = max(int(np.abs(fn(p).permute(1, 2, 0).numpy().astype(int) - ours(p).astype(int)).max())
                           for p in files)
                res[name]["max_pixel_difference"] = diff
        if kind == "jpeg":  # what training asks for: a 112-px input from these frames, decoded at 1/2 or 1/4 scale
            s = best_of(lambda: [read_image(str(p), size_hint=112) for p in files], repeat)
            res["dfer"]["frames_per_s_at_size_hint_112"] = round(len(files) / s, 1)
        for name in ("torchvision.decode_image", "torchvision.read_image"):
            res[name]["time_vs_dfer"] = round(res["dfer"]["frames_per_s"] / res[name]["frames_per_s"], 2)
        out[kind] = res
    verdicts = {}
    for bad, path in _bad_images(tmp, pngs[0], jpgs[0]).items():
        verdicts[bad] = {}
        for name, fn in (("dfer", ours), ("torchvision.decode_image", tv_decode), ("torchvision.read_image", tv_read)):
            try:
                img = fn(path)
                arr = np.asarray(img if isinstance(img, np.ndarray) else img.permute(1, 2, 0).numpy())
                verdicts[bad][name] = f"read as {arr.dtype} {'x'.join(map(str, arr.shape))}, max {int(arr.max())}"
            except DfeError as e:
                verdicts[bad][name] = f"refused, one line naming the file: {str(path) in str(e)}"
            except Exception as e:  # noqa: BLE001 - torchvision raises RuntimeError and others
                text = " ".join(str(e).split())
                verdicts[bad][name] = f"{type(e).__name__}, naming the file: {str(path) in str(e)}: {text[:80]}"
    out["bad_files"] = verdicts
    return out


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        res = {"beta": beta(args.repeat), "csv": csv_readers(args.rows, args.repeat, Path(tmp)),
               "decode": decoders(args.repeat, Path(tmp))}
    res["machine"] = {"cpu": _cpu(), "cores": os.cpu_count(),
                      "load_1min": round(os.getloadavg()[0], 2), "numpy": np.__version__, "torch": torch.__version__}
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scale of the columnar index: a 1,000,000-clip manifest -> ClipTable.

Writes a manifest CSV (``path`` + seven vote columns + ``fold``) to a temporary folder,
then loads it with :func:`dfer.data.corpora.manifest.load_manifest` in a fresh child
process (so the writer's memory does not count) and prints JSON:

- ``load_s``: wall time of ``load_manifest`` (parse + vectorised validation, no disk check);
- ``validate_s``: of that, ``ClipTable.validate`` alone (its ``np.unique`` on clip ids);
- ``peak_rss_mb``: the child's peak resident memory (``ru_maxrss``), interpreter and
  numpy included; ``rss_over_import_mb`` subtracts the RSS after ``import dfer``;
- ``tracemalloc_peak_mb``: peak Python/numpy allocations of a second, traced load.

Target: under 10 s and under 500 MB. Run::

    .venv/bin/python benchmarks/table_scale.py [--clips 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, resource, sys, time, tracemalloc
import numpy as np
import dfer.data.corpora.manifest as m
from dfer.data.table import ClipTable
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
path = sys.argv[1]
t = time.perf_counter()
table = m.load_manifest(path)
load_s = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
table.validate()
validate_s = time.perf_counter() - t
nbytes = sum(getattr(table, k).nbytes for k in ("clip_id", "source", "kind", "num_frames", "votes",
                                               "label", "fold", "split", "group"))
del table
tracemalloc.start()
m.load_manifest(path)
peak = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps({"load_s": round(load_s, 3), "validate_s": round(validate_s, 3),
                  "peak_rss_mb": round(rss, 1), "rss_after_import_mb": round(rss0, 1),
                  "rss_over_import_mb": round(rss - rss0, 1), "tracemalloc_peak_mb": round(peak, 1),
                  "table_mb": round(nbytes / 2**20, 1)}))
"""


def write_manifest(path: str, n: int, seed: int = 0) -> None:
    """A manifest of ``n`` frame folders with 10 votes over 7 classes and 5 folds."""
    rng = np.random.default_rng(seed)
    classes = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
    votes = rng.multinomial(10, [0.25, 0.17, 0.26, 0.15, 0.1, 0.03, 0.04], size=n)
    fold = rng.integers(1, 6, size=n)
    with open(path, "w", newline="") as f:
        f.write("path," + ",".join(classes) + ",fold\n")
        for start in range(0, n, 100_000):
            stop = min(n, start + 100_000)
            lines = [f"clips/{i:07d}," + ",".join(map(str, v)) + f",{k}\n"
                     for i, v, k in zip(range(start, stop), votes[start:stop].tolist(), fold[start:stop].tolist())]
            f.writelines(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "manifest.csv")
        t = time.perf_counter()
        write_manifest(path, args.clips)
        write_s = time.perf_counter() - t
        env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "src"))
        out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, env=env)
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        res = json.loads(out.stdout)
        res.update(clips=args.clips, manifest_mb=round(os.path.getsize(path) / 2**20, 1),
                   write_s=round(write_s, 2), cpu=os.cpu_count(), numpy=np.__version__,
                   target={"load_s": 10, "peak_rss_mb": 500})
        res["ok"] = res["load_s"] < 10 and res["peak_rss_mb"] < 500
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Check a ClipTable against the disk: files exist, are readable, hold the listed frames.

Community list files are known to disagree with the frames on disk, and a corpus copied
halfway has holes; training on either goes wrong quietly (a sampler indexes frames that
are not there, a loader worker dies an hour in). :func:`check_table` looks at every clip
once, in parallel threads, before training:

============  =================================================================  =============
clip kind     what is done (cost)                                                bad when
============  =================================================================  =============
frame folder  ``os.scandir`` count of image files (one directory read); the      missing, no
              first and last frame decoded at 1/8 scale (DCT scaling: two        images, a frame
              small JPEG decodes, ~1 ms)                                         undecodable
video         packet index by demuxing the whole file without decoding (exact    missing, cannot
              frame count, also for variable frame rates; ~ the file's read      be opened or
              time) and the first frame decoded                                  demuxed/decoded
still image   decoded at 1/8 scale                                               missing/undecodable
============  =================================================================  =============

The ends are what a quick check can afford; ``deep=True`` (``dfer data check --deep``)
decodes every frame of every clip instead, to find a bad frame in the middle or a video
whose frames do not all decode before a long run meets them.

Then, with the count listed in the table (``num_frames``, 0 = unknown):

- fewer frames on disk than listed -> bad ("short");
- another count than listed -> reported in ``report.differs`` (listed vs disk), not bad;
- the returned table carries the disk count for every good clip.

Bad clips end in one :class:`DataError` listing the first ids and the count
(``on_bad_clip="error"``), or are removed from the returned table and listed in the report
(``on_bad_clip="skip"``; :func:`write_skipped` writes them to the run directory). Nothing is
dropped silently.

Cache: with ``cache_dir``, the per-clip results are stored in
``check-<key>.npz`` where ``<key>`` hashes the dfer version and the check options, and every
entry is keyed by the clip's path, kind, and ``(mtime_ns, size)`` of its folder or file. A
changed folder (a frame added, removed or renamed changes its mtime) or file is checked
again; the others are not. (Overwriting a frame in place keeps the folder's mtime; delete
the cache to force a full check.)
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import dfer
from dfer.data import decode
from dfer.data.table import ClipKind, ClipTable, IMAGE_EXTENSIONS
from dfer.errors import DataError
from dfer.io import atomic_path, file_kind

OK, MISSING, UNREADABLE, EMPTY, SHORT = 0, 1, 2, 3, 4
PROBLEMS = {MISSING: "missing", UNREADABLE: "unreadable", EMPTY: "no frames", SHORT: "fewer frames than listed"}
_CACHE_FORMAT = 1


@dataclass
class CheckReport:
    """What :func:`check_table` found.

    Attributes:
        num_clips: clips checked; num_cached: of which answered from the cache.
        bad_id, bad_source, bad_problem, bad_detail: the bad clips (missing, unreadable,
            no frames, fewer frames than listed), one entry each.
        differs_id, differs_listed, differs_disk: good clips whose listed frame count is
            not the count on disk (the table now carries the disk count).
        skipped: ids removed from the table (``on_bad_clip="skip"``), else empty.
    """

    num_clips: int = 0
    num_cached: int = 0
    seconds: float = 0.0
    bad_id: list[str] = field(default_factory=list)
    bad_source: list[str] = field(default_factory=list)
    bad_problem: list[str] = field(default_factory=list)
    bad_detail: list[str] = field(default_factory=list)
    differs_id: list[str] = field(default_factory=list)
    differs_listed: list[int] = field(default_factory=list)
    differs_disk: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self, limit: int = 10) -> str:
        """One line: counts per problem, the first ``limit`` bad ids, the differing counts."""
        parts = [f"{self.num_clips} clips checked ({self.num_cached} from cache)"]
        if self.bad_id:
            kinds = {p: self.bad_problem.count(p) for p in dict.fromkeys(self.bad_problem)}
            shown = ", ".join(f"{i} ({p})" for i, p in zip(self.bad_id[:limit], self.bad_problem[:limit]))
            more = f" and {len(self.bad_id) - limit} more" if len(self.bad_id) > limit else ""
            parts.append(f"{len(self.bad_id)} bad: " + ", ".join(f"{n} {p}" for p, n in kinds.items())
                         + f" — {shown}{more}")
        if self.differs_id:
            shown = ", ".join(f"{i} (listed {a}, disk {b})" for i, a, b in
                              zip(self.differs_id[:limit], self.differs_listed[:limit], self.differs_disk[:limit]))
            more = f" and {len(self.differs_id) - limit} more" if len(self.differs_id) > limit else ""
            parts.append(f"{len(self.differs_id)} with another frame count on disk than listed: {shown}{more}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


#: the header of the list of skipped clips (:func:`write_skipped`)
SKIPPED_HEADER = ("clip_id", "source", "problem", "detail")


def is_skipped_list(path: Path) -> bool:
    """Whether ``path`` is a list of skipped clips dfer wrote: its first line is
    :data:`SKIPPED_HEADER`, which a rerun may replace."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return tuple(next(csv.reader([f.readline(4096)]), [])) == SKIPPED_HEADER
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def write_skipped(report: CheckReport, path: str | os.PathLike) -> Path:
    """Write the skipped clips (id, source, problem, detail) as CSV, e.g. into a run dir.
    Where the user names the file, :func:`dfer.io.claim_file` with :func:`is_skipped_list`
    judges it first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    skipped = set(report.skipped)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SKIPPED_HEADER)
        for row in zip(report.bad_id, report.bad_source, report.bad_problem, report.bad_detail):
            if row[0] in skipped:
                w.writerow(row)
    return path


# ---------------------------------------------------------------------------- probing
def _signature(source: str) -> tuple[int, int]:
    try:
        st = os.stat(source)
    except OSError:
        return -1, -1
    return st.st_mtime_ns, st.st_size


def _probe(source: str, kind: int, verify: bool, deep: bool = False) -> tuple[int, int, str]:
    """(frames on disk, status, detail) of one clip; never raises for bad media. ``deep``
    decodes every frame instead of the ends."""
    try:
        if kind == ClipKind.FRAMES:
            try:
                names = sorted(e.name for e in os.scandir(source)
                               if e.name.lower().endswith(IMAGE_EXTENSIONS) and not e.name.startswith("."))
            except FileNotFoundError:
                return 0, MISSING, "frame folder not found"
            except NotADirectoryError:
                return 0, MISSING, f"expected a frame folder, found {file_kind(os.stat(source).st_mode)}"
            if not names:
                return 0, EMPTY, "frame folder holds no image files"
            if deep:
                for name in names:
                    decode.read_image(os.path.join(source, name), size_hint=1)
            elif verify:
                for name in {names[0], names[-1]}:  # two frames, whichever sort order is used
                    decode.read_image(os.path.join(source, name), size_hint=1)
            return len(names), OK, ""
        if not os.path.exists(source):
            return 0, MISSING, "file not found"
        if kind == ClipKind.VIDEO:
            n = decode.probe_num_frames(source)
            if deep:
                decoded = decode.count_decoded_frames(source)
                if decoded < n:
                    return 0, UNREADABLE, (f"{source}: only {decoded} of its {n} frames decode (a truncated or "
                                           f"damaged file)")
            elif verify:
                decode.read_video_frames(source, [0], size_hint=1)
            return n, OK, ""
        if verify:
            decode.read_image(source, size_hint=1)
        return 1, OK, ""
    except DataError as e:
        return 0, UNREADABLE, str(e)
    except OSError as e:
        return 0, UNREADABLE, f"{source}: {e.strerror or e}"


def _cache_file(cache_dir, verify: bool, deep: bool = False) -> Path:
    key = json.dumps({"dfer": dfer.__version__, "format": _CACHE_FORMAT, "verify": verify, "deep": deep,
                      "image_extensions": IMAGE_EXTENSIONS}, sort_keys=True)
    return Path(cache_dir) / f"check-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def _load_cache(path: Path) -> dict[tuple[str, int, int, int], tuple[int, int, str]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {(s, k, m, z_): (n, st, d) for s, k, m, z_, n, st, d in
                    zip(z["source"].tolist(), z["kind"].tolist(), z["mtime"].tolist(), z["size"].tolist(),
                        z["frames"].tolist(), z["status"].tolist(), z["detail"].tolist())}
    except (OSError, KeyError, ValueError):
        return {}  # absent or unreadable cache: check everything again


def _save_cache(path: Path, older: dict, source, kind, sig, frames, status, detail) -> None:
    """Write the clips checked now and the entries of ``older`` for other clips: another part
    of the run (its train, test and further training sources) shares one cache."""
    mine = set(source)
    rest = [(k, v) for k, v in older.items() if k[0] not in mine]
    sig = np.concatenate([sig, np.array([k[2:] for k, _ in rest], np.int64).reshape(-1, 2)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, source=np.asarray(list(source) + [k[0] for k, _ in rest], dtype=str),
                 kind=np.asarray(list(kind) + [k[1] for k, _ in rest], np.uint8),
                 mtime=sig[:, 0], size=sig[:, 1],
                 frames=np.asarray(list(frames) + [v[0] for _, v in rest], np.int64),
                 status=np.asarray(list(status) + [v[1] for _, v in rest], np.int8),
                 detail=np.asarray(list(detail) + [v[2] for _, v in rest], dtype=str))


# ---------------------------------------------------------------------------- entry point
def check_table(
    table: ClipTable,
    *,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    on_bad_clip: str = "error",
    verify: bool = True,
    deep: bool = False,
) -> tuple[ClipTable, CheckReport]:
    """Check every clip of ``table`` against the disk (see the module docstring).

    Args:
        table: the clips.
        workers: threads (default ``min(32, 4 * cpu_count)``: the work is file I/O and
            decoders that release the GIL).
        cache_dir: folder for the result cache; None = no cache.
        on_bad_clip: ``"error"`` raises one DataError listing the bad clips; ``"skip"``
            returns the table without them and lists them in ``report.skipped``.
        verify: decode the first/last frame (videos: the first) to catch unreadable
            files; False only counts frames.
        deep: decode every frame of every clip (a bad frame in the middle, a truncated
            video); as many decodes as frames, for a check before a long run.

    Returns:
        (table with ``num_frames`` from the disk [and without the bad clips], report).

    Raises:
        DataError: bad clips with ``on_bad_clip="error"``; ConfigError-like DataError for an
            unknown ``on_bad_clip``.
    """
    if on_bad_clip not in ("error", "skip"):
        raise DataError(f"on_bad_clip {on_bad_clip!r} unknown; expected error or skip")

    if hasattr(decode, "clear_caches"):
        decode.clear_caches()  # a folder listing or video index cached before may be stale
    t0 = time.perf_counter()
    n = len(table)
    sources = table.source.tolist()
    kinds = table.kind.tolist()
    workers = workers or min(32, 4 * (os.cpu_count() or 1))
    cache_path = _cache_file(cache_dir, verify, deep) if cache_dir is not None else None
    cache = _load_cache(cache_path) if cache_path is not None else {}
    sig = np.zeros((n, 2), np.int64)
    frames = np.zeros(n, np.int64)
    status = np.zeros(n, np.int8)
    detail = [""] * n
    cached = np.zeros(n, bool)

    def work(lo_hi: tuple[int, int]) -> None:
        for i in range(*lo_hi):
            s = _signature(sources[i])
            sig[i] = s
            hit = cache.get((sources[i], kinds[i], s[0], s[1])) if s[0] >= 0 else None
            if hit is not None:
                frames[i], status[i], detail[i] = hit
                cached[i] = True
            else:
                frames[i], status[i], detail[i] = _probe(sources[i], kinds[i], verify, deep)

    step = max(1, min(256, n // (workers * 4) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, [(a, min(n, a + step)) for a in range(0, n, step)]))
    if cache_path is not None:
        _save_cache(cache_path, cache, sources, kinds, sig, frames, status, detail)

    listed = table.num_frames.astype(np.int64)
    status = status.copy()
    short = (status == OK) & (listed > 0) & (frames < listed)
    status[short] = SHORT
    for i in np.flatnonzero(short).tolist():
        detail[i] = f"{frames[i]} frames on disk, {listed[i]} listed"
    bad = np.flatnonzero(status != OK)
    differs = np.flatnonzero((status == OK) & (listed > 0) & (frames != listed))
    report = CheckReport(
        num_clips=n, num_cached=int(cached.sum()),
        bad_id=table.clip_id[bad].tolist(), bad_source=table.source[bad].tolist(),
        bad_problem=[PROBLEMS[int(s)] for s in status[bad]], bad_detail=[detail[i] for i in bad.tolist()],
        differs_id=table.clip_id[differs].tolist(), differs_listed=listed[differs].tolist(),
        differs_disk=frames[differs].tolist(),
    )
    good = status == OK
    out = replace(table, num_frames=np.where(good, frames, listed).astype(np.int32), meta=dict(table.meta))
    if bad.size:
        if on_bad_clip == "error":
            report.seconds = time.perf_counter() - t0
            raise DataError(f"{table.name}: {report.summary()}; fix the files, or leave these clips out with "
                            f"the setting data.on_bad_clip=skip (dfer train; `dfer data check` takes --on-bad-clip "
                            f"skip): they are then listed in the run directory")
        report.skipped = list(report.bad_id)
        out = out.take(good)
    out.meta["disk_check"] = {"clips": n, "bad": int(bad.size), "differs": int(differs.size)}
    report.seconds = time.perf_counter() - t0
    return out, report

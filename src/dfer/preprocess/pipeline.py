"""``dfer preprocess SRC OUT``: raw videos -> aligned face frame folders + a manifest.
Kept as one module: its robustness contract (below) ties the planning, the commit of each
video and the batch together.

The paper's pipeline (MIDAS, Sec. 4.1) starts from raw clips: detect the face, align its
landmarks with an affine transform, then sample frames. This command does the first two
steps offline for a whole folder of videos and writes DFEW's layout::

    OUT/<relative path without extension>/00001.jpg 00002.jpg ...   (size x size RGB JPEG)
    OUT/manifest.csv     path,num_frames[,label] (paths relative to OUT); with --kind, the
                         corpus's label,group,fold and vote columns
    OUT/report.json      one entry per video: frames, detection rate, filled frames, the faceless
                         frames left out at its ends (first_frame, trimmed_frames), error
    OUT/.done/<relative path>.json   per-video record, written last (the "done" marker)

Robustness contract:

- **Resumable and idempotent.** Each video is written into ``OUT/.partial/<pid>/...``,
  renamed into place in one ``os.rename`` and only then marked done by its record. A rerun
  skips videos whose record matches the source file (size, mtime) and the settings,
  discards folders without a record (killed between rename and record) and everything in
  ``OUT/.partial``; the result is byte-identical to an uninterrupted run (JPEG encoding,
  detection and warping are deterministic; reports hold no timings).
- **Failures do not stop the batch.** A video with no face, a missing or corrupt file, one
  that is not a regular file (a folder or a FIFO named like a video), or a codec FFmpeg
  cannot decode is recorded as failed with its reason and listed on stdout (``FAILED
  <video>: <why>``, one line each); the others are written as usual. The exit code is 0
  when every video is done, 2 when any failed (the summary line counts them) and for bad
  arguments (missing SRC, OUT inside SRC...).
- **SRC is never written to.**

Work is parallel over videos (a process pool, one detector per process, each process
limited to ``--threads`` threads for decoding, onnxruntime and OpenCV).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dfer.config import MAX_SIZE, MAX_THREADS, arg, check_settings, setting
from dfer.data.corpora.registry import KINDS, load_source, option_values
from dfer.data.table import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ClipKind, ClipTable
from dfer.emotions import canonical
from dfer.errors import ConfigError, DataError, DfeError
from dfer.io import (LOCK_NAME, MARK_NAME, atomic_path, exclusive_folder, holds, regular_file, single_component,
                     write_text_atomic)
from dfer.preprocess.align import FACE_FRACTION
from dfer.preprocess.face import ALIGN_SIZE, FaceConfig, add_face_options, face_options
from dfer.preprocess.video import iter_frames, probe_video

__all__ = ["PreprocessConfig", "VideoJob", "find_videos", "plan_jobs", "process_video", "preprocess",
           "recorded_preprocessing", "add_arguments", "run"]

MANIFEST = "manifest.csv"
REPORT = "report.json"
DONE_DIR = ".done"
PARTIAL_DIR = ".partial"


@dataclass
class PreprocessConfig(FaceConfig):
    """Everything that changes the output bytes (a change makes a rerun redo the videos):
    the face pipeline's settings (:class:`dfer.preprocess.face.FaceConfig`, with its
    defaults: every frame detected, at 480 px) and these.

    Attributes:
        size: side of the aligned crops (DFEW: 256).
        face_fraction: see :func:`dfer.preprocess.align.canonical_template`.
        quality: JPEG quality.
        label_from_parent: take each video's label from its parent folder (AFEW layout).
        trim: leave out the frames before the face is first found and after it is last
            found (a black fade-in, a title card, the face gone at the end): a frame folder
            is the face's clip. Faceless frames between two faces stay, with the nearest
            face's landmarks (the clip's time is not cut).
    """

    size: int = setting(ALIGN_SIZE, range="[32, inf)")
    face_fraction: float = setting(FACE_FRACTION, range="(0, 2]")
    quality: int = setting(95, range="[1, 100]")
    label_from_parent: bool = False
    trim: bool = True

    def validate(self) -> "PreprocessConfig":
        """``self``, each setting checked (a bad one is named by its option, ``--quality``)."""
        return check_settings(self, options=True)


@dataclass(frozen=True)
class VideoJob:
    """One video to preprocess.

    Attributes:
        source: path relative to SRC, with forward slashes.
        path: output folder relative to OUT (source without extension).
        label: canonical emotion name, or None.
        size_bytes, mtime_ns: the source file's stamp (a changed file is redone).
    """

    source: str
    path: str
    label: str | None
    size_bytes: int
    mtime_ns: int


# ---------------------------------------------------------------------------- planning
def find_videos(src: Path, exclude: Path | None = None) -> list[Path]:
    """Video files under ``src`` (recursive, sorted, hidden folders skipped), or ``src`` itself."""
    if src.is_file():
        return [src]
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or Path(root, d).resolve() != exclude))
        found += [Path(root, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith(".")]
    return sorted(found)


def plan_jobs(src: Path, videos: Iterable[Path], label_from_parent: bool, reserved: Iterable[str] = ()
              ) -> tuple[list[VideoJob], list[dict]]:
    """Turn video files into jobs; report output-folder collisions (a.mp4 and a.avi, or a
    video whose folder would take a name of ``reserved``: dfer's own files in OUT) and a
    video that is missing or not a regular file (a folder, a FIFO) as failures."""
    root = src.parent if src.is_file() else src
    jobs: list[VideoJob] = []
    clashes: list[dict] = []
    taken: dict[str, str] = {name: "dfer preprocess's own file" for name in reserved}
    for video in videos:
        rel = video.relative_to(root).as_posix()
        out = _output_folder(rel)
        label = None
        if label_from_parent:
            parent = video.parent.name if video.parent != root else ""
            if not parent:
                raise DataError(f"{video}: --label-from-parent expects videos inside class folders "
                                f"(SRC/<Class>/video), found one directly in SRC")
            try:
                label = canonical(parent)
            except DataError as e:
                raise DataError(f"{video}: parent folder {parent!r} is not an emotion name ({e})") from None
        if out in taken:
            clashes.append(_failure_record(rel, out, label, f"output folder {out!r} already taken by {taken[out]!r}"))
            continue
        try:
            st = regular_file(video, "video file")
        except DataError as e:  # the record names the video; the reason is the rest
            clashes.append(_failure_record(rel, out, label, str(e).removeprefix(f"{video}: ")))
            continue
        taken[out] = rel
        jobs.append(VideoJob(rel, out, label, st.st_size, st.st_mtime_ns))
    return jobs, clashes


def _output_folder(rel: str) -> str:
    """``a/b/clip.mp4`` -> ``a/b/clip``; a name that would still end in a media extension
    (``x.avi.mp4`` -> ``x.avi``) gets that dot replaced (``x_avi``): readers tell frame
    folders from videos and images by the suffix."""
    head, _, name = rel.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    while os.path.splitext(stem)[1].lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
        base, ext = os.path.splitext(stem)
        stem = f"{base}_{ext[1:]}"
    return f"{head}/{stem}" if head else stem


def _failure_record(source: str, path: str, label: str | None, error: str) -> dict:
    return {"source": source, "path": path, "label": label, "status": "failed", "error": error,
            "num_frames": 0, "detected_frames": 0, "found_frames": 0, "detection_rate": 0.0,
            "interpolated_frames": 0, "filled_frames": 0}


# ---------------------------------------------------------------------------- one video
def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())  # the record is the "done" mark: on disk before it counts


def _encode_jpeg(crop: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    # fixed settings (no optimize/progressive search) keep the bytes deterministic
    Image.fromarray(crop).save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return buf.getvalue()


def face_span(track, trim: bool) -> tuple[int, int]:
    """``[first, last)`` frames of a video that its frame folder holds: from the first to the
    last frame where the face was found (``trim``), or all of them."""
    found = np.flatnonzero(track.found)
    return (int(found[0]), int(found[-1]) + 1) if trim else (0, track.num_frames)


def written_frames(track, trim: bool) -> np.ndarray:
    """(T,) bool mask of :func:`face_span`."""
    first, last = face_span(track, trim)
    mask = np.zeros(track.num_frames, bool)
    mask[first:last] = True
    return mask


def process_video(job: VideoJob, src_root: Path, out: Path, config: PreprocessConfig, detector,
                  threads: int = 1, parent_pid: int | None = None) -> dict:
    """Detect, track, align and write one video; returns (and commits) its record.

    The frames go to ``OUT/.partial/<pid>/<path>``; on success that folder is renamed to
    ``OUT/<path>``; the record ``OUT/.done/<path>.json`` is written last. When
    ``parent_pid`` is given and that process has died (the batch was killed), nothing is
    committed: an orphaned worker must not race the rerun.
    """
    from dfer.preprocess.track import FrameSource, TrackConfig, faces_from_frames

    video = src_root / job.source
    partial = out / PARTIAL_DIR / str(os.getpid()) / job.path
    final = out / job.path
    record = _failure_record(job.source, job.path, job.label, "")
    record.update(settings=asdict(config), source_size=job.size_bytes, source_mtime_ns=job.mtime_ns)
    tcfg = TrackConfig.of_face(config, size=config.size, face_fraction=config.face_fraction)
    try:
        info = probe_video(video)
        record.update(width=info.width, height=info.height, fps=round(info.fps, 4), codec=info.codec)
        frames_seen = 0

        def frames():
            nonlocal frames_seen
            frames_seen = 0
            for frame in iter_frames(video, threads=threads):
                frames_seen += 1
                yield frame

        crops, track = faces_from_frames(frames, detector, tcfg, wanted=lambda t: written_frames(t, config.trim))
        if track is None:
            record["num_frames"] = frames_seen
            record["error"] = ("no frames decoded" if frames_seen == 0 else
                               f"no face found in {frames_seen} frames (score >= {config.score_threshold})")
        else:
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            first, last = face_span(track, config.trim)
            for t, crop in enumerate((c for c in crops if c is not None), start=1):
                (partial / f"{t:05d}.jpg").write_bytes(_encode_jpeg(crop, config.quality))
            stats = track.stats()
            filled = int((np.asarray(track.source[first:last]) == FrameSource.FILLED).sum())
            record.update(stats, status="ok", error=None, num_frames=last - first, video_frames=track.num_frames,
                          first_frame=first, trimmed_frames=track.num_frames - (last - first), filled_frames=filled)
    except DfeError as e:
        message = str(e).replace(str(video), job.source)
        record["error"] = message.removeprefix(f"{job.source}: ")  # the record already names the video
    except Exception as e:  # a bug on one video must not cost the batch; it is reported
        record["error"] = f"internal error: {type(e).__name__}: {e}"

    if parent_pid is not None and os.getppid() != parent_pid:
        shutil.rmtree(partial, ignore_errors=True)
        os._exit(1)  # orphaned: the batch was killed; leave all committing to the rerun
    done = out / DONE_DIR / f"{job.path}.json"
    intent = done.with_name(done.name + ".renaming")  # says: OUT/<path> is being put in place by dfer
    if final.exists() or final.is_symlink():
        if done.exists() or intent.exists():  # ours: an older version, or killed before its record
            shutil.rmtree(final) if final.is_dir() and not final.is_symlink() else final.unlink()
        else:  # the user's: never replaced
            shutil.rmtree(partial, ignore_errors=True)
            record.update(_failure_record(job.source, job.path, job.label,
                                          f"{final} exists and was not written by dfer preprocess; left as it is "
                                          f"(move it away, or write to another OUT)"), settings=record["settings"])
            return record  # no record on disk: a rerun tries again once the path is free
    if record["status"] == "ok":
        final.parent.mkdir(parents=True, exist_ok=True)
        intent.parent.mkdir(parents=True, exist_ok=True)
        intent.touch()
        os.rename(partial, final)
    else:
        shutil.rmtree(partial, ignore_errors=True)
    _write_json_atomic(done, record)
    intent.unlink(missing_ok=True)
    return record


# ---------------------------------------------------------------------------- workers
_WORKER: dict = {}


def _init_worker(config: PreprocessConfig, threads: int, parent_pid: int | None) -> None:
    import cv2

    from dfer.preprocess.detect import detector_for

    cv2.setNumThreads(threads)
    _WORKER.update(config=config, threads=threads, parent_pid=parent_pid, detector=detector_for(config, threads))


def _work(job: VideoJob, src_root: Path, out: Path) -> dict:
    w = _WORKER
    return process_video(job, src_root, out, w["config"], w["detector"], w["threads"], w["parent_pid"])


def _is_done(job: VideoJob, out: Path, config: PreprocessConfig) -> dict | None:
    """The video's record when it is finished with these settings on this source file."""
    try:
        record = json.loads((out / DONE_DIR / f"{job.path}.json").read_text())
    except (OSError, ValueError):
        return None
    settings = {"trim": False, **record.get("settings", {})}  # written before trimming existed: untrimmed
    if (settings != asdict(config) or record.get("source") != job.source
            or record.get("source_size") != job.size_bytes or record.get("source_mtime_ns") != job.mtime_ns
            or record.get("label") != job.label):
        return None
    if record.get("status") == "ok":
        folder = out / job.path
        n = sum(1 for _ in folder.glob("*.jpg")) if folder.is_dir() else -1
        if n != record.get("num_frames"):
            return None
    elif (out / job.path).exists():
        return None
    return record


# ---------------------------------------------------------------------------- batch
def preprocess(src: str | os.PathLike, out: str | os.PathLike, config: PreprocessConfig | None = None,
               workers: int = 1, threads: int = 1, manifest: str = MANIFEST, show_progress: bool | None = None,
               log=print, corpus: ClipTable | None = None) -> dict:
    """Preprocess every video under ``src`` into ``out``. See the module docstring.

    With ``corpus`` (``src`` read by a corpus adapter, e.g. an acted corpus whose labels are
    in its file names) only its videos are processed and the manifest carries, per clip,
    its label, its group (the actor: folds stay by person), its fold and its votes.

    Args:
        src: folder of videos (recursive) or one video file. Never written to.
        out: output folder (created).
        config: :class:`PreprocessConfig`.
        workers: processes (1 = in this process).
        threads: threads per process for decoding, onnxruntime and OpenCV.
        manifest: file name of the manifest inside ``out``.
        show_progress: rich progress bar; default: when stderr is a terminal.
        log: callable for the per-failure and summary lines.

    Returns:
        The report written to ``out/report.json`` plus ``"skipped"`` (videos already done).

    Raises:
        DataError, ConfigError: missing SRC, OUT inside SRC, no videos, bad settings.
    """
    config = (config or PreprocessConfig()).validate()
    if workers < 1 or threads < 1:
        raise ConfigError(f"--workers and --threads must be >= 1, got {workers} and {threads}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DataError(f"{src}: source folder not found")
    src_res, out_res = src.resolve(), out.resolve()
    src_dir = src_res if src_res.is_dir() else src_res.parent
    if out_res == src_dir or src_dir in out_res.parents:
        raise ConfigError(f"OUT {out} is inside SRC {src}: dfer preprocess never writes into SRC")
    if src.is_file() and not src.name.lower().endswith(VIDEO_EXTENSIONS):
        raise DataError(f"{src}: expected a folder or a video ({', '.join(VIDEO_EXTENSIONS)})")
    own = (REPORT, DONE_DIR, PARTIAL_DIR, LOCK_NAME, MARK_NAME)  # and the manifest: dfer's names in OUT
    if single_component(manifest, "--manifest") in own:
        raise ConfigError(f"--manifest {manifest!r} is a name dfer preprocess uses for itself in OUT; give another")
    videos = find_videos(src_res, exclude=out_res) if corpus is None else corpus_videos(corpus, src, src_res)
    if not videos:
        raise DataError(f"{src}: no videos found (looked for {', '.join(VIDEO_EXTENSIONS)}, recursively)")
    jobs, clashes = plan_jobs(src_res, videos, config.label_from_parent,
                              reserved=(manifest, *own))

    # one writer per OUT, and only an OUT of dfer's: new, empty, marked, or holding the
    # records of an earlier dfer's run
    lock = contextlib.ExitStack()
    lock.enter_context(exclusive_folder(out, "dfer preprocess", "preprocess", lambda d: holds(d, DONE_DIR)))
    try:
        shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)  # leftovers of killed runs
        records: dict[str, dict] = {}
        todo: list[VideoJob] = []
        for job in jobs:
            done = _is_done(job, out, config)
            if done is None:
                todo.append(job)
            else:
                records[job.source] = done
        skipped = len(records)
        src_root = src_res.parent if src_res.is_file() else src_res
        for record in _run_jobs(todo, src_root, out, config, workers, threads, show_progress):
            records[record["source"]] = record
            if record["status"] != "ok":
                log(f"FAILED {record['source']}: {record['error']}")
        for c in clashes:
            records[c["source"]] = c
            log(f"FAILED {c['source']}: {c['error']}")
        report = _write_outputs(out, manifest, config, [records[k] for k in sorted(records)],
                                corpus_columns(corpus, src) if corpus is not None else None)
        shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
    finally:
        lock.close()
    s = report["summary"]
    log(f"dfer preprocess: {s['videos']} videos, {s['ok']} ok, {s['failed']} failed, {skipped} already done; "
        f"{s['frames']} frames ({s['filled_frames']} filled, {s['trimmed_frames']} faceless at the ends left out) "
        f"-> {out / manifest}")
    return {**report, "skipped": skipped}


def _run_jobs(todo: list[VideoJob], src_root: Path, out: Path, config: PreprocessConfig, workers: int,
              threads: int, show_progress: bool | None):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if show_progress is None:
        show_progress = sys.stderr.isatty()
    progress = Progress(TextColumn("preprocess"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[name]}"), disable=not show_progress, transient=False)
    with progress:
        task = progress.add_task("videos", total=len(todo), name="")
        if workers == 1 or len(todo) <= 1:
            _init_worker(config, threads, None)
            for job in todo:
                progress.update(task, name=job.source)
                yield _work(job, src_root, out)
                progress.advance(task)
            return
        import multiprocessing

        # spawn: workers start clean (no inherited onnxruntime/OpenCV thread pools or locks)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(config, threads, os.getpid())) as pool:
            futures = {pool.submit(_work, job, src_root, out): job for job in todo}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    record = future.result()
                except Exception as e:  # the worker process died (killed, out of memory)
                    record = _failure_record(job.source, job.path, job.label, f"worker failed: {type(e).__name__}: {e}")
                progress.update(task, name=job.source)
                progress.advance(task)
                yield record


def _corpus_paths(corpus: ClipTable, src: Path) -> dict[int, str]:
    """Row -> the clip's path relative to ``src`` (as given, links not followed), for the
    corpus's videos; one outside ``src`` is an error."""
    base = os.path.abspath(src if src.is_dir() else src.parent)
    out = {}
    for i, (path, kind) in enumerate(zip(corpus.source, corpus.kind)):
        if kind != ClipKind.VIDEO:
            continue
        rel = os.path.relpath(os.path.abspath(path), base)
        if rel.startswith(".."):
            raise DataError(f"{path}: a clip of the corpus lies outside SRC {src}")
        out[i] = Path(rel).as_posix()
    return out


def corpus_videos(corpus: ClipTable, src: Path, src_res: Path) -> list[Path]:
    """The video files of a corpus read from ``src`` (frame folders are frames already), under
    ``src_res`` (``src`` resolved) as the jobs name them."""
    paths = _corpus_paths(corpus, src)
    if len(paths) < len(corpus):
        print(f"dfer preprocess: {len(corpus) - len(paths)} clip(s) of the corpus are not videos (frame "
              f"folders are frames already): left out", file=sys.stderr)
    root = src_res if src_res.is_dir() else src_res.parent
    return sorted({root / rel for rel in paths.values()})


def corpus_columns(corpus: ClipTable, src: Path) -> dict[str, dict[str, str]]:
    """Manifest cells of each video of ``corpus`` (by its path relative to SRC): label,
    group, fold, one column of votes per class."""
    has_votes = corpus.has_votes
    out = {}
    for i, rel in _corpus_paths(corpus, src).items():
        cells = {"label": corpus.classes[corpus.label[i]] if corpus.label[i] >= 0 else "",
                 "group": str(corpus.group[i]), "fold": str(int(corpus.fold[i])) if corpus.fold[i] > 0 else ""}
        if has_votes.any():
            cells.update({c: (f"{v:g}" if has_votes[i] else "") for c, v in zip(corpus.classes, corpus.votes[i])})
        out[rel] = cells
    return out


def _write_outputs(out: Path, manifest: str, config: PreprocessConfig, records: list[dict],
                   columns: dict[str, dict[str, str]] | None = None) -> dict:
    public = [{k: v for k, v in r.items() if k not in ("settings", "source_size", "source_mtime_ns")} for r in records]
    ok = [r for r in public if r["status"] == "ok"]
    report = {
        "settings": asdict(config),
        "summary": {"videos": len(public), "ok": len(ok), "failed": len(public) - len(ok),
                    "frames": int(sum(r["num_frames"] for r in ok)),
                    "filled_frames": int(sum(r["filled_frames"] for r in ok)),
                    "trimmed_frames": int(sum(r.get("trimmed_frames", 0) for r in ok))},
        "failures": [{"source": r["source"], "error": r["error"]} for r in public if r["status"] != "ok"],
        "videos": public,
    }
    _write_json_atomic(out / REPORT, report)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if columns is not None:  # a corpus's labels, actors, folds and votes
        names = list(next(iter(columns.values()), {}))
        writer.writerow(["path", "num_frames"] + names)
        for r in sorted(ok, key=lambda r: r["path"]):
            cells = columns[r["source"]]
            writer.writerow([r["path"], r["num_frames"]] + [cells[n] for n in names])
    else:
        with_label = config.label_from_parent
        writer.writerow(["path", "num_frames"] + (["label"] if with_label else []))
        for r in sorted(ok, key=lambda r: r["path"]):
            writer.writerow([r["path"], r["num_frames"]] + ([r["label"]] if with_label else []))
    write_text_atomic(out / manifest, buf.getvalue())
    return report


def recorded_preprocessing(folder: str | os.PathLike) -> tuple[float, float] | None:
    """``(fps, face_fraction)`` of a ``dfer preprocess`` frame folder: the frame rate of the
    video it came from and the face fraction it was aligned with, as its ``report.json`` (in
    OUT, some folder above it) records them; None when no report above the folder knows it."""
    folder = Path(folder).resolve()
    for out in folder.parents:
        report = out / REPORT
        if report.is_file():
            found = _recorded(str(report), report.stat().st_mtime_ns).get(folder.relative_to(out).as_posix())
            if found is not None:
                return found
    return None


@functools.lru_cache(maxsize=8)
def _recorded(report: str, mtime_ns: int) -> dict[str, tuple[float, float]]:
    try:
        data = json.loads(Path(report).read_text(encoding="utf-8"))
        fraction = float(data.get("settings", {}).get("face_fraction", PreprocessConfig.face_fraction))
        return {v["path"]: (float(v["fps"]), fraction) for v in data.get("videos", [])
                if isinstance(v, dict) and v.get("status") == "ok" and isinstance(v.get("fps"), (int, float))
                and v["fps"] > 0}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = PreprocessConfig()
    parser.add_argument("src", metavar="SRC", help="folder of videos (mp4, avi, mov, mkv; recursive) or one video")
    parser.add_argument("out", metavar="OUT", help="output folder: OUT/<relative path>/00001.jpg ... + manifest")
    parser.add_argument("--workers", type=arg(int, range="[1, inf)", limit=MAX_THREADS), default=1, help="processes working on videos in parallel (default 1)")
    parser.add_argument("--threads", type=arg(int, range="[1, inf)", limit=MAX_THREADS), default=1, help="threads per process (decode, detector, warp; default 1)")
    add_face_options(parser, d)
    parser.add_argument("--size", type=arg(int, range="[32, inf)", limit=MAX_SIZE), default=d.size, help=f"side of the aligned crops (default {d.size})")
    parser.add_argument("--face-fraction", type=float, default=d.face_fraction,
                        help=f"share of the crop covered by the ArcFace 112 box; smaller = more margin (default {d.face_fraction})")
    parser.add_argument("--quality", type=int, default=d.quality, help=f"JPEG quality (default {d.quality})")
    parser.add_argument("--label-from-parent", action="store_true",
                        help="label each video by its parent folder (AFEW: SRC/<Class>/clip.avi) in the manifest")
    parser.add_argument("--kind", choices=KINDS,
                        help="read SRC as this corpus (e.g. javanese, ravdess, cremad): only its videos are processed "
                             "and the manifest carries each clip's label, actor (group), fold and votes")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of --kind's corpus, e.g. -o folds=4 (repeatable)")
    parser.add_argument("--no-trim", action="store_true",
                        help="keep the frames before the face is first found and after it is last found (default: "
                             "left out, e.g. a black fade-in)")
    parser.add_argument("--manifest", default=MANIFEST, help=f"manifest file name inside OUT (default {MANIFEST})")
    parser.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                        help="progress bar (auto: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    config = PreprocessConfig(**face_options(args), size=args.size, face_fraction=args.face_fraction,
                              quality=args.quality, label_from_parent=args.label_from_parent, trim=not args.no_trim)
    if args.option and not args.kind:
        raise ConfigError("-o/--option goes with --kind: the options are the corpus kind's")
    if args.kind and args.label_from_parent:
        raise ConfigError("--label-from-parent and --kind both label the videos: give one")
    corpus = load_source(args.kind, args.src, **option_values(args.kind, args.option)) if args.kind else None
    show = {"auto": None, "on": True, "off": False}[args.progress]
    start = time.perf_counter()
    report = preprocess(args.src, args.out, config, workers=args.workers, threads=args.threads,
                        manifest=args.manifest, show_progress=show, log=lambda line: print(line, flush=True),
                        corpus=corpus)
    print(f"dfer preprocess: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 2 if report["summary"]["failed"] else 0

"""A hostile pass over dfer's command line: an adversarial user, counted.

Plays about a hundred cases against ``dfer`` in a temporary folder, each a subprocess with a
timeout: bad settings (overrides and options of the wrong type or range, config files that
are not YAML mappings), damaged run files (a checkpoint truncated, emptied or turned into a
folder or a FIFO, ``metrics.csv`` garbled, ``results.json`` a folder), bad paths (a file
where a folder should be, a FIFO, names with ``..``, the user's own folders given as
outputs), and bad media (a truncated or empty video, a 0-byte PNG, a 16-bit PNG). Each case
says what a careful tool does with it (``ok`` or ``refused``) and its outcome is classified:

- ``ok``: exit 0 and the expected outputs exist;
- ``refused``: exit 2, one line on stderr (a batch of inputs: one a bad input plus the
  count), no traceback;
- ``traceback``: a Python traceback on stderr;
- ``hang``: the timeout passed;
- ``wrong``: exit 0 where a refusal was expected (or outputs missing after exit 0);
- ``damaged``: a file that was there before the command changed or vanished, or a file
  appeared in a folder of the user's;
- ``other``: any other exit code, or a refusal of more than one line.

Prints one JSON object: the counts, the cases whose outcome is not the expected one (with
their command, outcome and the end of stderr), and the run's time. Exit 0 if every case
came out as expected, 1 otherwise. Not part of ``make test``; run by hand::

    .venv/bin/python benchmarks/hostile.py [--jobs 2] [--timeout 120] [--only SUBSTRING] [--keep DIR]

Uses the tests' fixtures (``tests/data``, ``tests/conftest.py``) and touches nothing
outside its temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
VIDEOS = ROOT / "tests" / "data" / "videos"


@dataclass
class Case:
    """One command and what a careful tool does with it.

    ``argv`` and ``outputs`` may hold ``{case}`` (the case's own folder) and ``{base}`` (the
    shared fixtures, read-only by contract: they are snapshotted too)."""

    name: str
    argv: list[str]
    expect: tuple[str, ...] = ("refused",)
    outputs: list[str] = field(default_factory=list)
    prepare: object = None  # fn(case_dir, base) run before the command
    lines: int = 1  # stderr lines a refusal may take
    owned: tuple[str, ...] = ("run", "half")  # folders of dfer's own the case starts from


def _snapshot(folder: Path) -> dict[str, str]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(folder))
            if p.is_symlink():
                snap[rel] = "link:" + os.readlink(p)
            elif p.is_fifo():
                snap[rel] = "fifo"
            elif p.is_dir():
                snap[rel] = "dir"
            elif p.is_file():
                snap[rel] = "file:" + hashlib.sha1(p.read_bytes()).hexdigest()
    return snap


def _damage(before: dict, after: dict, owned: tuple[str, ...], ran: bool = False) -> list[str]:
    """What changed of what was there, and new files in folders that are not dfer's: dfer
    may add to the fixtures it made (``owned``) and to folders it had marked before, may
    change what it wrote in them when the command ran (``ran``: exit 0), and its ``.lock``
    files are its own."""
    mine = [p for p in before if p.endswith(".lock") or ran and p.split("/")[0] in owned]
    before, after = ({k: v for k, v in d.items() if k not in mine} for d in (before, after))
    hurt = [f"changed {p}" for p, v in before.items() if after.get(p) != v and p in after]
    hurt += [f"removed {p}" for p in before if p not in after]
    for p in after.keys() - before.keys():
        parent = str(Path(p).parent)
        top = p.split("/")[0]
        if parent in before and top not in owned and f"{top}/.dfer" not in before:
            hurt.append(f"new {p}")
    return hurt


def _classify(case: Case, rc: int | None, err: str, hurt: list[str], folder: Path) -> str:
    if rc is None:
        return "hang"
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if hurt:
        return "damaged"
    lines = [ln for ln in err.splitlines() if ln.strip() and "Warning" not in ln]
    if rc == 0:
        missing = [o for o in case.outputs if not (folder / o).exists()]
        return "ok" if "ok" in case.expect and not missing else "wrong"
    if rc == 2 and 1 <= len(lines) <= case.lines:
        return "refused"
    return "other"


def run_case(case: Case, work: Path, base: Path, timeout: float, env: dict) -> dict:
    folder = work / re.sub(r"[^\w.=-]+", "_", case.name).replace("..", "__")
    folder.mkdir()
    if case.prepare:
        case.prepare(folder, base)
    fill = {"case": str(folder), "base": str(base)}
    argv = [a.format(**fill) for a in case.argv]
    case.outputs = [o.format(**fill) for o in case.outputs]
    before, before_base = _snapshot(folder), _snapshot(base)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dfer", *argv], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        _, err = proc.communicate()
        rc = None
    hurt = _damage(before, _snapshot(folder), case.owned, ran=rc == 0)
    hurt += [f"base: {h}" for h in _damage(before_base, _snapshot(base), ())]
    outcome = _classify(case, rc, err, hurt, folder)
    return {"name": case.name, "command": "dfer " + " ".join(case.argv), "expect": "/".join(case.expect),
            "outcome": outcome, "rc": rc, "seconds": round(time.monotonic() - start, 1),
            "stderr": err.strip()[-600:], "damage": hurt[:5]}


def _guarded(case: Case, work: Path, base: Path, timeout: float, env: dict) -> dict:
    try:
        result = run_case(case, work, base, timeout, env)
    except Exception as e:  # the harness's own failure, counted apart from dfer's
        result = {"name": case.name, "command": "dfer " + " ".join(case.argv), "expect": "/".join(case.expect),
                  "outcome": "harness", "rc": None, "seconds": 0, "stderr": repr(e), "damage": []}
    print(f"{result['outcome']:>9}  {result['name']}", file=sys.stderr, flush=True)
    return result


# ---------------------------------------------------------------------------------- fixtures


def make_base(base: Path) -> None:
    """The shared, read-only fixtures: a synthetic corpus, a trained-looking run on it, a
    run interrupted after its first epoch, a face image, a FER+ folder, a manifest."""
    import cv2
    import numpy as np

    from conftest import kill_9_into_epoch_2, write_random_ferplus, write_random_run
    from dfer.data.corpora.synthetic import SynthConfig, write_synthetic_dfew

    syn = base / "DFEW"
    write_synthetic_dfew(syn, SynthConfig(num_clips=40, num_frames=6, size=32, seed=0))
    run = write_random_run(base / "run")
    cfg = (run / "config.yaml").read_text().replace("root: ''", f"root: {syn}")
    (run / "config.yaml").write_text(cfg)
    write_random_ferplus(base / "ferplus", sizes=(20, 8))
    cap = cv2.VideoCapture(str(VIDEOS / "single_face.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    cv2.imwrite(str(base / "face.png"), frame)
    cv2.imwrite(str(base / "face16.png"), frame.astype(np.uint16) * 257)
    cv2.imwrite(str(base / "face16_grey.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    half = base / "half"
    kill_9_into_epoch_2([sys.executable, "-m", "dfer", "train", *TRAIN_ARGS.format(root=syn).split(), "--run-dir",
                         str(half)], half, env=env, cwd=base, after=0.0)
    assert (half / "checkpoints" / "last.safetensors").exists()


TRAIN_ARGS = ("data.source.root={root} data.size=32 data.num_frames=2 optim.epochs=2 optim.batch_size=8 "
              "model.pretrained=false data.num_workers=0 threads=1 tensorboard=false progress=false "
              "eval.every=100")


def _copy(src: str, dst: str = None):
    def prepare(folder: Path, base: Path) -> None:
        shutil.copytree(base / src, folder / (dst or src), symlinks=True)
    return prepare


def _then(*fns):
    def prepare(folder: Path, base: Path) -> None:
        for fn in fns:
            fn(folder, base)
    return prepare


def _write(rel: str, data: bytes | str):
    def prepare(folder: Path, base: Path) -> None:
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return prepare


def _truncate(rel: str, keep: float = 0.5):
    def prepare(folder: Path, base: Path) -> None:
        p = folder / rel
        p.write_bytes(p.read_bytes()[: int(p.stat().st_size * keep)])
    return prepare


def _make_dir(rel: str, replace: bool = True):
    def prepare(folder: Path, base: Path) -> None:
        p = folder / rel
        if replace and p.exists():
            p.unlink()
        p.mkdir(parents=True, exist_ok=True)
        (p / "keep.txt").write_text("mine\n")
    return prepare


def _fifo(rel: str):
    def prepare(folder: Path, base: Path) -> None:
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            p.unlink()
        os.mkfifo(p)
    return prepare


def _user_folder(rel: str):
    """A folder of the user's: notes and a photo that must survive."""
    def prepare(folder: Path, base: Path) -> None:
        p = folder / rel
        p.mkdir(parents=True)
        (p / "notes.txt").write_text("my notes\n")
        (p / "holiday.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
        (p / "results.json").write_text('{"mine": true}\n')
    return prepare


def _link(rel: str, target: str):
    def prepare(folder: Path, base: Path) -> None:
        (folder / rel).symlink_to(target.format(case=folder, base=base))
    return prepare


# ------------------------------------------------------------------------------------- cases


def cases() -> list[Case]:
    out: list[Case] = []
    add = out.append
    pc = ["train", "--print-config"]

    # bad settings: each override alone, on --print-config (accepted = exit 0 = wrong)
    bad_overrides = [
        "optim.lr=abc", "optim.lr=-1", "optim.lr=nan", "optim.lr=inf", "optim.lr=1e9", "optim.epochs=0",
        "optim.epochs=1.5", "optim.epochs=true", "optim.batch_size=1e12", "optim.momentum=1",
        "data.size=0", "data.size=100000", "data.num_frames=abc", "data.num_workers=-1", "data.scales=[2]",
        "data.face_crop=1.5", "data.classes=nonsense", "data.source.kind=nokind", "model.dropout=1",
        "model.name=resnet1000", "model.kwargs=3", "mixing.alpha=0", "mixing.normalise=softmaxx",
        "label_mode=nope", "seed=4294967296", "device=gpu", "name=../x", "name=a/b", "threads=-1",
        "robust.num_clips=1", "nonexistent.key=1", "optim=3", "data.source=5", "optim.lr", "=1",
        "optim.lr=[1,2]", "data.size=1e400",
        "data.erase=1.5", "data.erase=-0.1", "data.erase_scale=[0.3,0.1]", "data.erase_scale=[0,2]",
        "data.rotate=-5", "data.rotate=abc", "data.scale_jitter=1", "data.jitter=2", "optim.precision=fp64",
    ]
    for ov in bad_overrides:
        add(Case(f"set-{ov}", [*pc, ov]))
    add(Case("set-valid", [*pc, "optim.lr=0.1", "data.size=112"], expect=("ok",)))
    add(Case("set-mixup-softmax", [*pc, "label_mode=mixup", "mixing.normalise=softmax"]))
    add(Case("set-best_val-without-val", [*pc, "eval.select=best_val"]))

    # config files that are not what they should be
    add(Case("cfg-missing", [*pc, "-c", "{case}/nope.yaml"]))
    add(Case("cfg-folder", [*pc, "-c", "{case}/cfg"], prepare=_make_dir("cfg")))
    add(Case("cfg-list", [*pc, "-c", "{case}/c.yaml"], prepare=_write("c.yaml", "- 1\n- 2\n")))
    add(Case("cfg-syntax", [*pc, "-c", "{case}/c.yaml"], prepare=_write("c.yaml", "optim: {lr: [\n")))
    add(Case("cfg-binary", [*pc, "-c", "{case}/c.yaml"], prepare=_write("c.yaml", bytes(range(256)))))
    add(Case("cfg-base-cycle", [*pc, "-c", "{case}/c.yaml"], prepare=_write("c.yaml", "base: c.yaml\n")))
    add(Case("cfg-fifo", [*pc, "-c", "{case}/c.yaml"], prepare=_fifo("c.yaml")))
    add(Case("cfg-python-tag", [*pc, "-c", "{case}/c.yaml"],
             prepare=_write("c.yaml", "optim: !!python/object/apply:os.system ['touch pwned']\n")))

    # numeric options out of range, per command
    video = str(VIDEOS / "single_face.mp4")
    for opt in ["--size 0", "--num-frames 0", "--window-seconds 0", "--window-seconds nan", "--stride -1",
                "--detect-every 0", "--score-threshold 2", "--min-face -5", "--max-side -1"]:
        add(Case(f"predict-opt{opt}", ["predict", video, *opt.split(), "--out", "{case}/p"]))
    for opt in ["--num-clips 0", "--workers -1", "--fold 0"]:
        add(Case(f"evaluate-opt{opt}", ["evaluate", "--pretrained", "--source", "dfew:{base}/DFEW", *opt.split(),
                                        "--out", "{case}/e"]))
    for opt in ["--workers 0", "--workers abc"]:
        add(Case(f"check-opt{opt}", ["data", "check", "{base}/DFEW", "--kind", "dfew", *opt.split()]))
    for opt in ["--size 0", "--quality 500", "--face-fraction 0"]:
        add(Case(f"preprocess-opt{opt}", ["preprocess", str(VIDEOS), "{case}/o", *opt.split()]))
    for folds in ["5-3", "abc", "200"]:
        add(Case(f"cv-folds-{folds}", ["cv", "--folds", folds, "--out", "{case}/cv",
                                       f"data.source.root={{base}}/DFEW"]))

    # damaged run files
    run, ckpt = "run", "run/checkpoints/last.safetensors"
    ev = ["evaluate", "{case}/run"]
    pr = ["predict", video, "--run", "{case}/run", "--out", "{case}/p"]
    add(Case("run-evaluate-intact", ev, expect=("ok",), outputs=["run/results.json"], prepare=_copy(run)))
    damages = {
        "ckpt-truncated": _truncate(ckpt),
        "ckpt-empty": _write(ckpt, b""),
        "ckpt-folder": _make_dir(ckpt),
        "ckpt-fifo": _fifo(ckpt),
        "ckpt-text": _write(ckpt, "hello\n"),
        "classes-garbled": _write("run/classes.json", "[\"happy\", "),
        "classes-folder": _make_dir("run/classes.json"),
        "classes-unknown": _write("run/classes.json", '["happy", "bored"]'),
        "config-garbled": _write("run/config.yaml", "data: [\n"),
        "config-missing": lambda f, b: (f / "run/config.yaml").unlink(),
        "config-folder": _make_dir("run/config.yaml"),
        "checkpoints-file": lambda f, b: (shutil.rmtree(f / "run/checkpoints"),
                                          (f / "run/checkpoints").write_text("x")),
    }
    for name, fn in damages.items():
        add(Case(f"run-evaluate-{name}", ev, prepare=_then(_copy(run), fn)))
        if name.startswith(("ckpt", "classes")):
            add(Case(f"run-predict-{name}", pr, prepare=_then(_copy(run), fn), lines=2))
    add(Case("run-evaluate-results-folder", ev, prepare=_then(_copy(run), _make_dir("run/results.json"))))
    add(Case("run-evaluate-predictions-folder", ev, prepare=_then(_copy(run), _make_dir("run/predictions.csv"))))
    add(Case("run-evaluate-tag-dotdot", [*ev, "--tag", "../../x"], prepare=_copy(run)))

    resume = ["train", "--run-dir", "{case}/half", *TRAIN_ARGS.format(root="{base}/DFEW").split()]
    add(Case("resume-intact", resume, expect=("ok",), outputs=["half/results.json"], prepare=_copy("half")))
    either = ("refused", "ok")  # sidecars dfer can do without, and its own config.yaml
    add(Case("resume-last-json-garbled", resume, expect=either,
             prepare=_then(_copy("half"), _write("half/checkpoints/last.json", "{"))))
    add(Case("resume-config-changed", resume, expect=either, prepare=_then(_copy("half"), lambda f, b: (
        f / "half/config.yaml").write_text((f / "half/config.yaml").read_text().replace("size: 32", "size: 48")))))
    resume_damages = {
        "metrics-garbled": _write("half/metrics.csv", "\x00\x01garbage,,,\n\n"),
        "metrics-other-header": _write("half/metrics.csv", "a,b,c\n1,2,3\n"),
        "metrics-folder": _make_dir("half/metrics.csv"),
        "metrics-fifo": _fifo("half/metrics.csv"),
        "ckpt-truncated": _truncate("half/checkpoints/last.safetensors"),
        "ckpt-empty": _write("half/checkpoints/last.safetensors", b""),
        "ckpt-fifo": _fifo("half/checkpoints/last.safetensors"),
        "results-folder": _make_dir("half/results.json"),
        "mark-garbled": _write("half/.dfer", b"\xff\xfe\x00"),
    }
    for name, fn in resume_damages.items():
        add(Case(f"resume-{name}", resume, prepare=_then(_copy("half"), fn)))

    # bad paths and the user's folders as outputs
    train_new = ["train", *TRAIN_ARGS.format(root="{base}/DFEW").split()]
    add(Case("path-run-dir-is-file", [*train_new, "--run-dir", "{case}/f"], prepare=_write("f", "mine\n")))
    add(Case("path-run-dir-user-folder", [*train_new, "--run-dir", "{case}/home"], prepare=_user_folder("home")))
    add(Case("path-run-dir-fifo", [*train_new, "--run-dir", "{case}/f"], prepare=_fifo("f")))
    add(Case("path-run-dir-under-file", [*train_new, "--run-dir", "{case}/f/run"], prepare=_write("f", "mine\n")))
    add(Case("path-root-missing", [*pc[:1], "data.source.root={case}/nope", "--run-dir", "{case}/r"]))
    add(Case("path-root-is-file", [*pc[:1], "data.source.root={case}/f", "--run-dir", "{case}/r"],
             prepare=_write("f", "x")))
    add(Case("path-root-fifo", [*pc[:1], "data.source.root={case}/f", "--run-dir", "{case}/r"], prepare=_fifo("f")))
    add(Case("path-out-dir-user-folder", [*train_new, "out_dir={case}/home", "name=."], prepare=_user_folder("home")))
    add(Case("path-evaluate-user-folder", ["evaluate", "{case}/home"], prepare=_user_folder("home")))
    add(Case("path-evaluate-file", ["evaluate", "{case}/f"], prepare=_write("f", "x")))
    add(Case("path-evaluate-out-user-folder", ["evaluate", "--pretrained", "--source", "dfew:{base}/DFEW",
                                               "--out", "{case}/home"], prepare=_user_folder("home")))
    add(Case("path-predict-out-user-folder", ["predict", video, "--out", "{case}/home"],
             prepare=_user_folder("home"), lines=2))
    add(Case("path-predict-out-file", ["predict", video, "--out", "{case}/f"], prepare=_write("f", "x"), lines=2))
    # the answer rule: values out of range, and a correction the model cannot make (the shipped file of
    # an earlier dfer records no training prior; a run never does)
    for value in ("-1", "3", "abc", "nan"):
        add(Case(f"answer-prior-correction-{value}", ["predict", video, "--out", "{case}/p",
                                                      "--prior-correction", value]))
    add(Case("answer-tta-unknown", ["predict", video, "--out", "{case}/p", "--tta", "ten-crop"]))
    add(Case("answer-correction-without-prior", ["predict", video, "--out", "{case}/p", "--prior-correction", "0.5"],
             expect=("refused", "ok"), outputs=["p/single_face.json"]))
    add(Case("answer-flip-ok", ["predict", video, "--out", "{case}/p", "--tta", "flip"], expect=("ok",),
             outputs=["p/single_face.json"]))
    add(Case("answer-evaluate-run-tta", ["evaluate", "{case}/run", "--tta", "flip"], prepare=_copy("run")))
    add(Case("path-predict-out-home-link", ["predict", video, "--out", "{case}/link"],
             prepare=_then(_user_folder("home"), _link("link", "{case}/home")), lines=2))
    add(Case("path-predict-own-json-of-user", ["predict", "{case}/single_face.mp4", "--out", "{case}"],
             prepare=_then(lambda f, b: shutil.copy(video, f), _write("single_face.json", '{"mine": 1}')), lines=2))
    add(Case("path-stats-out-user-folder", ["data", "stats", "{base}/DFEW", "--kind", "dfew", "--out", "{case}/home"],
             prepare=_user_folder("home")))
    add(Case("path-check-cache-user-folder", ["data", "check", "{base}/DFEW", "--kind", "dfew", "--cache-dir",
                                              "{case}/home"], prepare=_user_folder("home")))
    add(Case("path-preprocess-out-user-folder", ["preprocess", "{case}/src", "{case}/home"],
             prepare=_then(_user_folder("home"), lambda f, b: (f / "src").mkdir())))
    add(Case("path-preprocess-out-file", ["preprocess", "{case}/src", "{case}/f"],
             prepare=_then(_write("f", "x"), lambda f, b: (f / "src").mkdir())))
    add(Case("path-preprocess-manifest-dotdot", ["preprocess", "{case}/src", "{case}/o", "--manifest", "../m.csv"],
             prepare=lambda f, b: (f / "src").mkdir()))
    add(Case("path-cv-dir-user-folder", ["cv", "--summarise", "--cv-dir", "{case}/home"], prepare=_user_folder("home")))
    add(Case("path-cv-out-file", ["cv", "--out", "{case}/f", "data.source.root={base}/DFEW"], prepare=_write("f", "x")))
    add(Case("path-compare-missing", ["compare", "{case}/nope"]))
    add(Case("path-compare-user-folder", ["compare", "{case}/home"], prepare=_user_folder("home")))
    add(Case("path-compare-out-user-file", ["compare", "{case}/home", "--out", "{case}/table.md"],
             prepare=_then(_user_folder("home"), _write("table.md", "# my table\n"))))
    add(Case("path-stats-manifest-fifo", ["data", "stats", "{case}/m.csv", "--kind", "manifest", "--out", "{case}/s"],
             prepare=_fifo("m.csv")))
    add(Case("path-train-name-dotdot", [*train_new, "out_dir={case}/runs", "name=../../escape"]))

    # bad media
    def media(name, data_fn, expect=("refused",), lines=2):
        add(Case(f"media-{name}", ["predict", "{case}/" + name, "--out", "{case}/p"], expect=expect,
                 outputs=["p/" + Path(name).stem + ".json"] if "ok" in expect else [], prepare=data_fn, lines=lines))

    single = (VIDEOS / "single_face.mp4").read_bytes()
    media("truncated.mp4", _write("truncated.mp4", single[: len(single) // 3]), expect=("refused", "ok"))
    media("headless.mp4", _write("headless.mp4", single[len(single) // 2:]))
    media("empty.mp4", _write("empty.mp4", b""))
    media("text.mp4", _write("text.mp4", "not a video\n" * 100))
    media("empty.png", _write("empty.png", b""))
    media("random.png", _write("random.png", os.urandom(4096)))
    media("png-header-only.png", _write("png-header-only.png", b"\x89PNG\r\n\x1a\n"))
    media("face16.png", lambda f, b: shutil.copy(b / "face16.png", f), expect=("ok",))
    media("face16_grey.png", lambda f, b: shutil.copy(b / "face16_grey.png", f), expect=("ok",))
    media("face.png", lambda f, b: shutil.copy(b / "face.png", f), expect=("ok",))
    media("face-as.jpg", lambda f, b: shutil.copy(b / "face.png", f / "face-as.jpg"), expect=("ok",))
    media("dir.mp4", _make_dir("dir.mp4"))
    media("fifo.mp4", _fifo("fifo.mp4"))
    media("no_face.mp4", lambda f, b: shutil.copy(VIDEOS / "no_face.mp4", f))
    media("weird name é ü.mp4", lambda f, b: shutil.copy(VIDEOS / "single_face.mp4", f / "weird name é ü.mp4"),
          expect=("ok",))
    add(Case("media-dotdot-path", ["predict", "{case}/sub/../face.png", "--out", "{case}/p"], expect=("ok",),
             outputs=["p/face.json"], prepare=_then(lambda f, b: shutil.copy(b / "face.png", f),
                                                     lambda f, b: (f / "sub").mkdir())))
    add(Case("media-batch-one-bad", ["predict", "{case}/face.png", "{case}/empty.png", "--out", "{case}/p"],
             outputs=["p/face.json"], lines=3,
             prepare=_then(lambda f, b: shutil.copy(b / "face.png", f), _write("empty.png", b""))))

    # damaged corpora
    def corpus(name, fn, argv=("data", "check", "{case}/DFEW", "--kind", "dfew", "--deep"), expect=("refused",)):
        add(Case(f"corpus-{name}", list(argv), expect=expect, prepare=_then(_copy("DFEW"), fn)))

    frame = "DFEW/Clip/clip_224x224/00001/00003.jpg"
    corpus("intact", lambda f, b: None, expect=("ok",))
    corpus("frame-empty", _write(frame, b""))
    corpus("frame-truncated", _truncate(frame, 0.3))
    corpus("frame-folder", _make_dir(frame))
    corpus("frame-fifo", _fifo(frame))
    corpus("labels-garbled", _write("DFEW/EmoLabel_DataSplit/train(single-labeled)/set_1.csv", "\x00\x00,,\n"))
    corpus("labels-folder", _make_dir("DFEW/EmoLabel_DataSplit/train(single-labeled)/set_1.csv"))
    corpus("annotation-garbled", _write("DFEW/Annotation/annotation.xlsx", "not excel"))
    corpus("clip-folder-empty", lambda f, b: [p.unlink() for p in (f / "DFEW/Clip/clip_224x224/00001").iterdir()])
    manifests = {
        "manifest-nul": "path,label\n\x00\x00\n",
        "manifest-no-path": "file,label\na,happy\n",
        "manifest-negative-votes": "path,happy,sad\n{case}/DFEW/Clip/clip_224x224/00001,-3,5\n",
        "manifest-nan-votes": "path,happy,sad\n{case}/DFEW/Clip/clip_224x224/00001,nan,5\n",
        "manifest-missing-clip": "path,label\n{case}/nope,happy\n",
        "manifest-unknown-label": "path,label\n{case}/DFEW/Clip/clip_224x224/00001,bored\n",
    }
    for name, text in manifests.items():
        def prep(f, b, text=text):
            (f / "m.csv").write_text(text.format(case=f))
        verb = ("check",) if "missing" in name else ("stats", "--out", "{case}/s")
        corpus(name, prep, argv=("data", verb[0], "{case}/m.csv", "--kind", "manifest", *verb[1:]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--only", help="run the cases whose name contains this")
    p.add_argument("--keep", help="work in this new folder and keep it (default: a temporary one)")
    args = p.parse_args()
    start = time.monotonic()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dfer-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    try:
        base = work / "_base"
        make_base(base)
        todo = [c for c in cases() if not args.only or args.only in c.name]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda c: _guarded(c, work, base, args.timeout, env), todo))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    failing = [r for r in results if r["outcome"] not in r["expect"].split("/")]
    print(json.dumps({"cases": len(results), "counts": dict(sorted(counts.items())),
                      "as_expected": len(results) - len(failing), "failing": failing,
                      "seconds": round(time.monotonic() - start)}, indent=1, ensure_ascii=False))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())

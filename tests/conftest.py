"""Shared test fixtures.

Real-world files live in the repository with their licences, so a clone tests on its own:
``videos_dir`` (tests/data/videos: real face videos) and ``lists_dir`` (tests/data/lists:
the community DFEW / MAFW / FERV39K list files, a few clips of every label and fold, made by
its ``make_fixture.py``). ``synthetic_dfew`` is one small synthetic corpus in DFEW's
on-disk layout, written once per test session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


#: what tests and the tools that run them leave in a checkout, by design
_LEFT_BY_TOOLS = ("__pycache__", ".pytest_cache", ".hypothesis", ".egg-info", ".venv")


def _repo_files() -> set[str] | None:
    """Untracked and ignored paths of the checkout (or, outside a git checkout, the names
    in its root), less those the test tools leave; None if git fails."""
    import subprocess

    if not (ROOT / ".git").exists():
        return {p.name for p in ROOT.iterdir()}
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=all", "--ignored",
                              "-z"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    paths = {entry[3:] for entry in out.split("\0") if entry[:2] in ("??", "!!")}
    return {p for p in paths if not any(tool in p for tool in _LEFT_BY_TOOLS)}


@pytest.fixture(scope="session", autouse=True)
def _the_suite_writes_nothing_into_the_checkout():
    """Every test writes under its tmp_path: a file the suite leaves in the repository (a
    command's output with a default folder in the working directory) fails the session."""
    before = _repo_files()
    yield
    after = _repo_files()
    if before is not None and after is not None and after - before:
        pytest.fail(f"the tests left files in the repository: {sorted(after - before)[:10]}")


@pytest.fixture(scope="session")
def lists_dir() -> Path:
    """tests/data/lists: DFEW_set_k_{train,test}.txt, MAFW_set_k_..., FERV39K_{train,test}.txt (MIT)."""
    return DATA / "lists"


@pytest.fixture(scope="session")
def videos_dir() -> Path:
    """tests/data/videos: single_face.mp4, no_face.mp4, face_noface.mov (MIT, LICENSE-videos)."""
    return DATA / "videos"


@pytest.fixture(scope="session")
def synthetic_dfew(tmp_path_factory) -> Path:
    """A tiny synthetic DFEW-layout corpus: 70 clips, 10 frames each, 48x48 pixels."""
    from dfer.data.corpora.synthetic import SynthConfig, write_synthetic_dfew

    root = tmp_path_factory.mktemp("synth") / "DFEW"
    write_synthetic_dfew(root, SynthConfig(num_clips=70, num_frames=10, size=48, seed=0))
    return root


def write_random_run(run_dir: Path, size: int = 32, num_frames: int = 2) -> Path:
    """A run directory as dfer train writes it, holding an untrained TSM-R18 (no training)."""
    import json

    import torch

    from dfer.config import RunConfig, config_hash, dump_config, from_dict
    from dfer.emotions import BASIC7
    from dfer.models import create_model
    from dfer.checkpoint import save_checkpoint

    cfg = from_dict(RunConfig, {"data": {"size": size, "num_frames": num_frames}})
    run_dir.mkdir(parents=True)
    dump_config(cfg, run_dir / "config.yaml")
    (run_dir / "classes.json").write_text(json.dumps(list(BASIC7)))
    model = create_model(cfg.model.name, num_classes=len(BASIC7), dropout=cfg.model.dropout)
    # the state dfer train writes after its first epoch (of one optimiser step)
    save_checkpoint(run_dir / "checkpoints" / "last.safetensors", model,
                    torch.optim.SGD(model.parameters(), lr=0.1), None, None,
                    {"epoch": 1, "step": 1, "config_hash": config_hash(cfg), "best": -1.0, "finished": False})
    return run_dir


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


def write_random_ferplus(root: Path, sizes=(136, 24), seed=0) -> Path:
    """FER+'s generator layout: random 48x48 grey PNGs, ten votes each, one unknown-majority row per split."""
    import csv

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    index = 0
    for folder, n in zip(("FER2013Train", "FER2013Valid"), sizes):
        (root / folder).mkdir(parents=True)
        rows = []
        for i in range(n):
            name = f"fer{index:07d}.png"
            index += 1
            Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), mode="L").save(root / folder / name)
            emotions = rng.multinomial(10, [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]).tolist()
            votes = [0] * 8 + [7, 3] if i == 1 else emotions + [0, 0]
            rows.append([name, "(0, 0, 48, 48)", *votes])
        with open(root / folder / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return root


def kill_9_into_epoch_2(cmd: list, run_dir: Path, *, env: dict, cwd: Path, after: float) -> None:
    """Start ``cmd`` (a dfer train, or a torchrun of one, into ``run_dir``) in a session of its
    own, wait until epoch 1 is checkpointed, then ``after`` seconds later SIGKILL every process
    of the job (trainer or torchrun agent, its ranks, their loader workers) and reap it.

    torchrun starts each rank in a session of its own, so killing the agent's process group
    would leave the ranks running on as orphans, still writing into ``run_dir``: the job's
    processes are found by parentage instead, stopped (so none starts another) until no new
    one appears, then killed."""
    import os
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    marker = run_dir / "checkpoints" / "last.json"
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert proc.poll() is None, f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "epoch 1 never checkpointed"
        time.sleep(0.05)
    time.sleep(after)  # into epoch 2
    job: set[int] = set()
    while True:
        found = _descendants(proc.pid) - job
        if not found:
            break
        for pid in found:
            _signal(pid, signal.SIGSTOP)
        job |= found
    for pid in job:
        _signal(pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    deadline = time.monotonic() + 60
    while any(_alive(pid) for pid in job - {proc.pid}):  # orphans are reaped by init: wait for them to go
        assert time.monotonic() < deadline, "the killed job's processes did not end"
        time.sleep(0.05)
    # none of the job escaped the search: no living process still names the run directory
    left = [pid for pid in _writers_of(run_dir) if _alive(pid)]
    assert not left, f"processes of the killed job still run: {left}"


def _writers_of(run_dir: Path) -> list[int]:
    """Processes whose command line names ``run_dir``."""
    import os

    needle = os.fsencode(str(run_dir))
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if needle in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def _descendants(pid: int) -> set[int]:
    """``pid`` and every living process below it (read from /proc)."""
    import os

    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(name))
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out and _alive(p):
            out.add(p)
            todo.extend(children.get(p, []))
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not yet ended (a zombie has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig) -> None:
    import os

    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

"""Shared test fixtures.

``videos_dir`` is the folder of real face videos kept in the repository (tests/data/videos,
copied from ../shared/fixtures/videos with their licence), so the video tests run in a
clone with nothing beside it. ``FIXTURES`` is the rest of the real-world data beside the
project (../shared/fixtures: the community list files); tests that need it read it in place
and skip without it. ``synthetic_dfew`` is one small synthetic corpus in DFEW's on-disk
layout, written once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES


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

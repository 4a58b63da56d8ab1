"""The disk check: missing, short and unreadable clips are found, counts corrected, the
cache reused and invalidated when a folder changes."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from PIL import Image

from dfer.data.check import check_table, write_skipped
from dfer.data.table import ClipKind, ClipTable
from dfer.emotions import BASIC7
from dfer.errors import DataError


def frames(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.new("RGB", (16, 16), (20 * i, 40, 60)).save(folder / f"{i}.jpg", quality=90)


def video(path, n, size=32):
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        for i in range(n):
            img = np.full((size, size, 3), 10 * i, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)


@pytest.fixture
def corpus(tmp_path):
    """Seven clips: good, count-differs, short, missing, empty, truncated JPEG, video."""
    r = tmp_path / "c"
    frames(r / "good", 5)
    frames(r / "more", 7)  # listed 5: differs, still good
    frames(r / "short", 3)  # listed 5: fewer on disk -> bad
    frames(r / "empty", 0)
    frames(r / "broken", 4)
    data = (r / "broken" / "4.jpg").read_bytes()
    (r / "broken" / "4.jpg").write_bytes(data[: len(data) // 2])  # truncated last frame
    video(r / "clip.avi", 6)
    ids = ["good", "more", "short", "missing", "empty", "broken", "clip"]
    src = [str(r / "good"), str(r / "more"), str(r / "short"), str(r / "missing"), str(r / "empty"),
           str(r / "broken"), str(r / "clip.avi")]
    t = ClipTable.build(BASIC7, ids, src, num_frames=[5, 5, 5, 5, 0, 4, 0], label=[0, 1, 2, 3, 4, 5, 6], name="c")
    return t, r


def test_error_lists_every_bad_clip_in_one_message(corpus):
    t, _ = corpus
    with pytest.raises(DataError) as e:
        check_table(t, workers=2)
    msg = str(e.value)
    assert "4 bad: 1 fewer frames than listed, 1 missing, 1 no frames, 1 unreadable" in msg
    for cid in ("short", "missing", "empty", "broken"):
        assert f"{cid} (" in msg
    assert "good (" not in msg and "data.on_bad_clip=skip" in msg and "--on-bad-clip skip" in msg


def test_skip_filters_lists_and_corrects_counts(corpus, tmp_path):
    t, _ = corpus
    out, rep = check_table(t, workers=2, on_bad_clip="skip")
    assert out.clip_id.tolist() == ["good", "more", "clip"]
    assert out.num_frames.tolist() == [5, 7, 6]  # disk counts, the video's from its packets
    assert sorted(rep.skipped) == ["broken", "empty", "missing", "short"]
    assert rep.differs_id == ["more"] and rep.differs_listed == [5] and rep.differs_disk == [7]
    assert out.label.tolist() == [0, 1, 6]  # rows stay aligned
    path = write_skipped(rep, tmp_path / "run" / "skipped_clips.csv")
    rows = list(csv.DictReader(open(path)))
    assert {r["clip_id"]: r["problem"] for r in rows} == {
        "short": "fewer frames than listed", "missing": "missing", "empty": "no frames", "broken": "unreadable"}
    assert "3 frames on disk, 5 listed" in next(r["detail"] for r in rows if r["clip_id"] == "short")


def test_without_verify_a_truncated_frame_passes(corpus):
    t, _ = corpus
    out, rep = check_table(t.take([0, 5]), workers=1, verify=False)
    assert rep.bad_id == [] and out.num_frames.tolist() == [5, 4]


def test_deep_decodes_every_frame_and_finds_a_bad_middle_one_the_ends_pass(tmp_path):
    frames(tmp_path / "mid", 6)
    (tmp_path / "mid" / "3.jpg").write_bytes(b"not a jpeg")  # neither the first nor the last
    video(tmp_path / "v.avi", 20)
    t = ClipTable.build(BASIC7, ["mid", "v"], [str(tmp_path / "mid"), str(tmp_path / "v.avi")],
                        num_frames=[6, 0], label=[0, 1], name="t")
    _, quick = check_table(t, workers=1)
    assert quick.bad_id == []  # the ends decode
    out, deep = check_table(t, workers=1, on_bad_clip="skip", deep=True)
    assert deep.bad_id == ["mid"] and deep.bad_problem == ["unreadable"] and "3.jpg" in deep.bad_detail[0]
    assert out.clip_id.tolist() == ["v"] and out.num_frames.tolist() == [20]  # every frame of the video decoded


def test_cache_reused_and_invalidated_when_a_folder_changes(corpus, tmp_path):
    t, r = corpus
    good = t.take([0, 1, 6])
    cache = tmp_path / "cache"
    _, rep1 = check_table(good, cache_dir=cache, workers=2)
    assert rep1.num_cached == 0 and len(list(cache.glob("check-*.npz"))) == 1
    _, rep2 = check_table(good, cache_dir=cache, workers=2)
    assert rep2.num_cached == 3
    # remove a frame: the folder's mtime changes, so that clip alone is checked again
    os.remove(r / "good" / "5.jpg")
    st = os.stat(r / "good")
    os.utime(r / "good", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse-mtime filesystems
    with pytest.raises(DataError, match=r"good \(fewer frames than listed\)"):
        check_table(good, cache_dir=cache, workers=2)
    out, rep3 = check_table(good, cache_dir=cache, workers=2, on_bad_clip="skip")
    assert rep3.num_cached == 3  # the changed folder's new result was cached by the previous call
    assert rep3.skipped == ["good"]
    # other options (verify=False) use another cache file
    _, rep4 = check_table(good, cache_dir=cache, workers=2, verify=False, on_bad_clip="skip")
    assert rep4.num_cached == 0


def test_parts_of_a_run_share_the_cache_without_evicting_each_other(corpus, tmp_path):
    """A run checks its training clips, its test clips and its further training sources one
    after another into one cache: each keeps its entries."""
    t, _ = corpus
    train, test = t.take([0, 1]), t.take([6])
    cache = tmp_path / "cache"
    check_table(train, cache_dir=cache, workers=2)
    check_table(test, cache_dir=cache, workers=2)
    _, again = check_table(train, cache_dir=cache, workers=2)
    assert again.num_cached == 2
    _, both = check_table(t.take([0, 1, 6]), cache_dir=cache, workers=2)
    assert both.num_cached == 3


def test_unknown_num_frames_filled_and_still_image(tmp_path):
    frames(tmp_path / "f", 3)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    t = ClipTable.build(BASIC7, ["f", "x", "bad"], [str(tmp_path / "f"), str(tmp_path / "x.png"),
                                                  str(tmp_path / "bad.png")], label=[0, 1, 2])
    assert t.kind.tolist() == [ClipKind.FRAMES, ClipKind.IMAGE, ClipKind.IMAGE]
    out, rep = check_table(t, on_bad_clip="skip")
    assert out.num_frames.tolist() == [3, 1] and rep.skipped == ["bad"] and rep.differs_id == []


def test_bad_option():
    t = ClipTable.build(BASIC7, ["a"], ["/nonexistent"], label=[0])
    with pytest.raises(DataError, match="on_bad_clip 'drop' unknown"):
        check_table(t, on_bad_clip="drop")


def test_check_cli(corpus, tmp_path, capsys):
    from dfer.cli import main

    t, r = corpus
    man = tmp_path / "m.csv"
    man.write_text("path,label,num_frames\n" + "".join(
        f"{os.path.relpath(s, tmp_path)},{BASIC7[k]},{n}\n" for s, k, n in zip(t.source, t.label, t.num_frames)))
    assert main(["data", "check", str(man)]) == 2
    assert "4 bad" in capsys.readouterr().err
    assert main(["data", "check", str(man), "--deep", "--no-verify"]) == 2
    assert "give one of them" in capsys.readouterr().err
    skipped = tmp_path / "skipped.csv"
    assert main(["data", "check", str(man), "--on-bad-clip", "skip", "--skipped-out", str(skipped)]) == 0
    assert "4 bad" in capsys.readouterr().out
    assert len(skipped.read_text().splitlines()) == 5


def test_skipped_out_replaces_only_its_own_list_unless_told(corpus, tmp_path, capsys):
    """--skipped-out names a file: a user's file there is refused in one line before the
    source is read, and left as it is; dfer's own list is replaced; --overwrite replaces any."""
    from dfer.cli import main

    t, r = corpus
    man = tmp_path / "m.csv"
    man.write_text("path,label,num_frames\n" + "".join(
        f"{os.path.relpath(s, tmp_path)},{BASIC7[k]},{n}\n" for s, k, n in zip(t.source, t.label, t.num_frames)))
    args = ["data", "check", str(man), "--on-bad-clip", "skip", "--skipped-out"]
    mine = tmp_path / "notes.csv"
    mine.write_text("my,own,notes\n")
    assert main([*args, str(mine)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [f"dfer data: error: {mine} exists and was not written by dfer data check; choose another, or give "
                   f"--overwrite to replace it"], err
    assert mine.read_text() == "my,own,notes\n"
    # refused before the source is read: a missing manifest is not what it reports
    assert main(["data", "check", str(tmp_path / "none.csv"), "--skipped-out", str(mine)]) == 2
    assert "was not written by dfer data check" in capsys.readouterr().err
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main([*args, str(folder)]) == 2
    assert f"{folder} is not a file" in capsys.readouterr().err
    assert main([*args, str(mine), "--overwrite"]) == 0
    rows = list(csv.reader(open(mine, newline="")))
    assert rows[0] == ["clip_id", "source", "problem", "detail"] and len(rows) == 5
    capsys.readouterr()
    mine.write_text(mine.read_text().replace("missing", "gone"))  # dfer's list, from an earlier check
    assert main([*args, str(mine)]) == 0  # its own list: replaced without being told
    assert "gone" not in mine.read_text() and len(mine.read_text().splitlines()) == 5

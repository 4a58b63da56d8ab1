"""Decoding: exactly the requested frames, from folders, videos (PyAV) and still images."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from PIL import Image

from dfer.data.decode import (clear_caches, list_frame_files, num_frames_of, probe_num_frames, read_frames,
                              read_image, read_video_frames)
from dfer.data.table import ClipKind
from dfer.errors import DataError


def _value(i: int) -> int:
    return 10 + 12 * i  # frame i is a flat grey of this value; steps survive JPEG/H.264 loss


def write_folder(folder, n, size=(40, 32), quality=95, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = names[i] if names else f"{i:05d}.jpg"
        Image.fromarray(np.full((size[1], size[0], 3), _value(i), np.uint8)).save(folder / name, quality=quality)
    clear_caches()
    return folder


def write_video(path, n, *, codec="libx264", gop=5, pts=None, size=64):
    """Flat grey frames, frame i = _value(i); optional explicit (variable) timestamps in ms."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if pts is not None:
            stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), _value(i), np.uint8), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decoded_values(frames: np.ndarray) -> list[int]:
    # frame index from the mean grey of the central region (codecs are lossy at the edges)
    h, w = frames.shape[1:3]
    centre = frames[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(len(frames), -1).mean(axis=1)
    return [int(round((v - 10) / 12)) for v in centre]


def test_folder_reads_exactly_the_requested_frames(tmp_path):
    folder = write_folder(tmp_path / "clip", 20)
    idx = [19, 0, 7, 7, 3]
    frames = read_frames(folder, ClipKind.FRAMES, idx)
    assert frames.dtype == np.uint8 and frames.shape == (5, 32, 40, 3)
    assert decoded_values(frames) == idx
    assert np.abs(frames[0].astype(int) - _value(19)).max() <= 2


def test_natural_sort(tmp_path):
    names = ["img_10.jpg", "img_2.jpg", "img_1.jpg", "img_100.png", "img_9.jpeg"]
    folder = tmp_path / "c"
    write_folder(folder, 5, names=names)
    (folder / "notes.txt").write_text("not a frame")
    got = [p.rsplit("/", 1)[1] for p in list_frame_files(folder)]
    assert got == ["img_1.jpg", "img_2.jpg", "img_9.jpeg", "img_10.jpg", "img_100.png"]
    # frame 1 of the clip is img_2.jpg, written as value index 1
    assert decoded_values(read_frames(folder, ClipKind.FRAMES, [1, 3])) == [1, 0]
    assert num_frames_of(folder, ClipKind.FRAMES) == 5


def test_still_image_is_a_one_frame_clip(tmp_path):
    path = tmp_path / "face.png"
    img = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)
    frames = read_frames(path, ClipKind.IMAGE, [0, 0, 0, 0])
    assert frames.shape == (4, 12, 10, 3)
    assert all(np.array_equal(f, img) for f in frames)  # PNG is lossless
    assert num_frames_of(path, ClipKind.IMAGE) == 1


def test_grayscale_frames_become_rgb(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(folder / "0.png")
    frames = read_frames(folder, ClipKind.FRAMES, [0])
    assert frames.shape == (1, 8, 8, 3) and (frames == 77).all()


def test_folder_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"missing.*frame folder not found"):
        read_frames(tmp_path / "missing", ClipKind.FRAMES, [0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: frame folder holds no image files"):
        list_frame_files(tmp_path / "empty")
    folder = write_folder(tmp_path / "c", 4)
    with pytest.raises(DataError, match=r"/c: frame index 4 requested, expected 0\.\.3 \(the folder has 4 frames\)"):
        read_frames(folder, ClipKind.FRAMES, [0, 4])
    # a truncated JPEG: PIL's error becomes a DataError naming the file
    data = (folder / "00002.jpg").read_bytes()
    (folder / "00002.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"00002\.jpg: cannot decode image"):
        read_frames(folder, ClipKind.FRAMES, [1, 2])
    (folder / "00003.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match=r"00003\.jpg: cannot decode image"):
        read_frames(folder, ClipKind.FRAMES, [3])
    with pytest.raises(DataError, match=r"nope\.png: image file not found"):
        read_frames(tmp_path / "nope.png", ClipKind.IMAGE, [0])


def test_frames_of_different_sizes_are_reported(tmp_path):
    folder = write_folder(tmp_path / "c", 2)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(folder / "00001.jpg")
    with pytest.raises(DataError, match=r"00001\.jpg: frame is 10x10, expected 40x32"):
        read_frames(folder, ClipKind.FRAMES, [0, 1])


def test_jpeg_draft_decodes_at_reduced_size_but_never_below_hint(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(path)
    assert read_image(str(path)).shape == (480, 640, 3)
    assert read_image(str(path), size_hint=224).shape == (240, 320, 3)  # 1/2: short side 240 >= 224
    assert read_image(str(path), size_hint=100).shape == (120, 160, 3)  # 1/4
    assert read_image(str(path), size_hint=300).shape == (480, 640, 3)  # 1/2 would fall below 300


def _pil_reference(path, size_hint=None) -> np.ndarray:
    """What PIL decodes: the reference the libjpeg-turbo path must equal pixel for pixel."""
    with Image.open(path) as img:
        if size_hint:
            f = 1
            while f < 8 and min(img.size) // (2 * f) >= size_hint:
                f *= 2
            if f > 1:
                img.draft("RGB", (img.width // f, img.height // f))
        return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("mode,size,subsampling", [("RGB", (53, 37), 2), ("RGB", (1279, 721), 0),
                                                   ("L", (64, 48), 0), ("CMYK", (40, 30), 0)])
def test_jpeg_decode_equals_pil_pixel_for_pixel(tmp_path, mode, size, subsampling):
    # noise at odd sizes (DCT scaling rounds a side up), 4:2:0 and 4:4:4, grey, and CMYK
    # (which libjpeg-turbo cannot turn into RGB, so PIL decodes it)
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels).convert(mode)
    path = tmp_path / f"{mode}.jpg"
    img.save(path, quality=90, **({"subsampling": subsampling} if mode != "L" else {}))
    for hint in (None, 20, 100, 300):
        got = read_image(str(path), size_hint=hint)
        want = _pil_reference(path, hint)
        assert got.dtype == np.uint8 and got.shape == want.shape, (hint, got.shape, want.shape)
        assert np.array_equal(got, want), hint
    # a folder of such frames decodes to the same clip, frames in the order asked for
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(pixels, 7 * i, axis=1)).convert(mode).save(folder / f"{i}.jpg", quality=90)
    clear_caches()
    clip = read_frames(folder, ClipKind.FRAMES, [2, 0, 2], size_hint=20)
    for t, i in enumerate([2, 0, 2]):
        assert np.array_equal(clip[t], _pil_reference(folder / f"{i}.jpg", 20))
    assert clip.flags.writeable and clip.flags.c_contiguous


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "I;16", "1"])
def test_png_decode_equals_pil_pixel_for_pixel(tmp_path, mode):
    # 8-bit grey and RGB go through OpenCV; the others (whose conversion PIL defines) stay PIL's
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (19, 23, 4), dtype=np.uint8)
    img = Image.fromarray(pixels, "RGBA").convert(mode) if mode not in ("I;16", "P") else \
        Image.fromarray(pixels[..., :3]).convert("P") if mode == "P" else \
        Image.fromarray(rng.integers(0, 65536, (19, 23), dtype=np.uint16))
    path = tmp_path / "face.png"
    img.save(path)
    got = read_image(str(path))
    assert got.dtype == np.uint8 and got.shape == (19, 23, 3)
    # 16-bit grey keeps each sample's high byte, as 16-bit colour does (PIL's convert clips it at 255)
    want = np.repeat((np.asarray(img) >> 8).astype(np.uint8)[..., None], 3, axis=2) if mode == "I;16" else \
        _pil_reference(path)
    assert np.array_equal(got, want)


def test_the_fast_decoders_do_decode_what_they_take(tmp_path, monkeypatch):
    # 8-bit RGB and grey JPEG and PNG never reach PIL (a silent fallback would pass the tests above)
    from dfer.data import decode

    rng = np.random.default_rng(6)
    paths = []
    for mode in ("RGB", "L"):
        img = Image.fromarray(rng.integers(0, 256, (21, 27, 3), dtype=np.uint8)).convert(mode)
        for ext in ("jpg", "png"):
            paths.append(tmp_path / f"{mode}.{ext}")
            img.save(paths[-1])
    want = {p: _pil_reference(p) for p in paths}

    def no_pil(*args):
        raise AssertionError("PIL was asked to decode")

    monkeypatch.setattr(decode, "_decode_pil", no_pil)
    for p in paths:
        assert np.array_equal(read_image(str(p)), want[p]), p


def test_a_png_orientation_tag_is_ignored_as_pil_ignores_it(tmp_path):
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    assert np.array_equal(read_image(str(path)), np.asarray(img))


def test_oversized_images_meet_pils_decompression_bomb_limit(tmp_path, monkeypatch):
    path = tmp_path / "face.jpg"
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(path)
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(tmp_path / "face.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for name in ("face.jpg", "face.png"):
        with pytest.raises(DataError, match=name.replace(".", r"\.") + ": cannot decode image .*decompression bomb"):
            read_image(str(tmp_path / name))


def test_a_folder_of_png_and_jpeg_frames_reads_as_one_clip(tmp_path):
    # the first frame decides the clip's shape whichever decoder reads it
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(3)]
    Image.fromarray(frames[0]).save(folder / "0.png")
    Image.fromarray(frames[1]).save(folder / "1.jpg", quality=95)
    Image.fromarray(frames[2]).save(folder / "2.png")
    clear_caches()
    clip = read_frames(folder, ClipKind.FRAMES, [0, 1, 2])
    assert np.array_equal(clip[0], frames[0]) and np.array_equal(clip[2], frames[2])
    assert np.array_equal(clip[1], _pil_reference(folder / "1.jpg"))
    Image.fromarray(frames[1][:20]).save(folder / "1.jpg", quality=95)
    with pytest.raises(DataError, match=r"1\.jpg: frame is 32x20, expected 32x24 like .*0\.png"):
        read_frames(folder, ClipKind.FRAMES, [0, 1])


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("mpeg4", "avi")])
def test_video_reads_exactly_the_requested_frames(tmp_path, codec, ext):
    path = write_video(tmp_path / f"v.{ext}", 18, codec=codec, gop=5)
    assert probe_num_frames(path) == 18
    assert num_frames_of(path, ClipKind.VIDEO) == 18
    for idx in ([0, 1, 2], [17, 3, 11, 11], [12, 16], [5], list(range(18))):
        frames = read_frames(path, ClipKind.VIDEO, idx)
        assert frames.shape == (len(idx), 64, 64, 3)
        assert decoded_values(frames) == idx, (codec, idx)
    with pytest.raises(DataError, match=r"v\.%s: frame index 18 requested, expected 0\.\.17" % ext):
        read_frames(path, ClipKind.VIDEO, [2, 18])


def test_variable_frame_rate_counts_frames_not_seconds(tmp_path):
    # irregular gaps: frame i is the i-th frame shown, whatever its timestamp
    pts = [0, 40, 80, 300, 310, 320, 900, 940, 1500, 1540, 1580, 1620]
    path = write_video(tmp_path / "vfr.mp4", len(pts), pts=pts, gop=3)
    assert probe_num_frames(path) == len(pts)
    idx = [10, 1, 6, 3, 8]
    assert decoded_values(read_video_frames(path, idx)) == idx


def test_video_errors(tmp_path):
    with pytest.raises(DataError, match=r"gone\.mp4: video file not found"):
        read_frames(tmp_path / "gone.mp4", ClipKind.VIDEO, [0])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError, match=r"bad\.mp4: cannot open video"):
        probe_num_frames(bad)


def test_real_fixture_videos(videos_dir):
    single = videos_dir / "single_face.mp4"
    assert probe_num_frames(single) == 72
    frames = read_frames(single, ClipKind.VIDEO, [0, 35, 71])
    assert frames.shape == (3, 360, 640, 3) and frames.dtype == np.uint8
    # seeking reads the same pixels as decoding from the start
    with av.open(str(single)) as c:
        full = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(full) == 72
    assert all(np.array_equal(full[i], f) for i, f in zip([0, 35, 71], frames))
    # reduced-size decode keeps the short side >= the hint
    assert read_video_frames(single, [5], size_hint=150).shape == (1, 180, 320, 3)

    hevc = videos_dir / "face_noface.mov"
    n = probe_num_frames(hevc)
    assert n == 169
    late = read_frames(hevc, ClipKind.VIDEO, [n - 1, 120])
    assert late.shape == (2, 540, 960, 3) and late.std() > 5  # real picture content, not blank

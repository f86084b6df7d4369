"""Readers and writers: every format round-trips real files on disk."""

from __future__ import annotations

import json
import os
import warnings

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from labsession.errors import ConfigError
from labsession.motion import VideoWriter, open_video


@pytest.fixture
def video():
    rng = np.random.default_rng(0)
    return rng.random((7, 12, 10, 2)).astype(np.float32)


def _read_all(path, **kwargs):
    with open_video(path, **kwargs) as reader:
        return reader.shape, reader[0 : len(reader)], reader.read_frames([5, 1, 1])


@pytest.mark.parametrize("fmt", ["HDF5", "MAT", "TIFF", "NPZ", "ZARR"])
def test_writer_reader_round_trip(tmp_path, video, fmt):
    suffix = {"HDF5": ".h5", "MAT": ".mat", "TIFF": ".tif", "NPZ": ".npz", "ZARR": ".zarr"}[fmt]
    path = tmp_path / f"out{suffix}"
    with VideoWriter(path, fmt, shape=video.shape, metadata={"alpha": [1.5, 1.5]}) as writer:
        writer.write(video[:4])
        writer.write(video[4:])
    assert path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    if fmt == "NPZ":
        with np.load(path) as data:
            np.testing.assert_array_equal(data["mov"], video)
            assert json.loads(str(data["options"]))["alpha"] == [1.5, 1.5]
        return
    shape, frames, picked = _read_all(path)
    assert shape == video.shape
    np.testing.assert_array_equal(frames, video)
    np.testing.assert_array_equal(picked, video[[5, 1, 1]])


def test_metadata_is_stored(tmp_path, video):
    meta = {"alpha": [2.0, 2.0], "quality_setting": "fast"}
    for fmt, name in (("HDF5", "a.h5"), ("ZARR", "a.zarr"), ("TIFF", "a.tif")):
        with VideoWriter(tmp_path / name, fmt, shape=video.shape, metadata=meta) as w:
            w.write(video)
    with h5py.File(tmp_path / "a.h5") as f:
        assert json.loads(f["mov"].attrs["options"]) == meta
    assert json.loads(zarr.open_array(tmp_path / "a.zarr").attrs["options"]) == meta
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.is_imagej
        assert json.loads(tif.imagej_metadata["Info"]) == meta


def test_mat_header_and_matlab_layout(tmp_path, video):
    path = tmp_path / "v.mat"
    with VideoWriter(path, "MAT", shape=video.shape) as w:
        w.write(video)
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path) as f:  # MATLAB sees (H, W, C, T): HDF5 holds it axis-reversed
        assert f["mov"].shape == (7, 2, 10, 12)


def test_mat_written_like_matlab_is_read(tmp_path, video):
    path = tmp_path / "matlab.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("Y", data=np.transpose(video[..., 0], (0, 2, 1)))  # MATLAB (H, W, T)
    shape, frames, _ = _read_all(path)
    assert shape == (7, 12, 10, 1)
    np.testing.assert_array_equal(frames[..., 0], video[..., 0])


def test_multipage_tiff_and_imagej_hyperstack(tmp_path, video):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, (video[..., 0] * 1000).astype(np.uint16))  # T pages
    with tifffile.TiffFile(plain) as tif:
        assert len(tif.pages) == 7
    shape, frames, _ = _read_all(plain)
    assert shape == (7, 12, 10, 1)
    np.testing.assert_array_equal(frames[..., 0], (video[..., 0] * 1000).astype(np.uint16))
    hyper = tmp_path / "hyper.tif"
    tifffile.imwrite(hyper, np.moveaxis(video, -1, 1), imagej=True, metadata={"axes": "TCYX"})
    shape, frames, picked = _read_all(hyper)
    assert shape == video.shape
    np.testing.assert_array_equal(frames, video)
    np.testing.assert_array_equal(picked, video[[5, 1, 1]])
    shape, frames, _ = _read_all(hyper, channel_idx=[1])
    np.testing.assert_array_equal(frames[..., 0], video[..., 1])


def test_hdf5_dataset_choice_npy_zarr_and_arrays(tmp_path, video):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["small"] = video[:2, ..., 0]
        f["big"] = video
    assert _read_all(path)[0] == video.shape  # largest dataset by default
    with open_video(path, dataset_name="small") as reader:
        assert reader.shape == (2, 12, 10, 1)
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        open_video(path, dataset_name="nope")
    np.save(tmp_path / "v.npy", video)
    np.testing.assert_array_equal(_read_all(tmp_path / "v.npy")[1], video)
    z = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=video.shape, dtype="float32")
    z[:] = video
    np.testing.assert_array_equal(_read_all(tmp_path / "v.zarr")[1], video)
    np.testing.assert_array_equal(_read_all(video[..., 0])[1][..., 0], video[..., 0])


def _write_then_fail(writer, frames):
    with writer:
        writer.write(frames)
        raise RuntimeError("boom")


def test_failed_write_leaves_no_file(tmp_path, video):
    for fmt, name in (("HDF5", "x.h5"), ("TIFF", "x.tif"), ("ZARR", "x.zarr"), ("MAT", "x.mat")):
        writer = VideoWriter(tmp_path / name, fmt, shape=video.shape)
        with pytest.raises(RuntimeError, match="boom"):
            _write_then_fail(writer, video[:3])
        assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []
    short = VideoWriter(tmp_path / "short.h5", "HDF5", shape=video.shape)
    short.write(video[:3])
    with pytest.raises(ValueError, match="only 3 of 7 frames"):
        short.close()
    assert not (tmp_path / "short.h5").exists()


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.tif"):
        open_video(tmp_path / "missing.tif")
    (tmp_path / "v.avi").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown video format '\.avi'"):
        open_video(tmp_path / "v.avi")
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="2 dimensions"):
        open_video(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="channel_idx"):
        open_video(np.zeros((2, 4, 4, 1)), channel_idx=[1])


# -- TIFF layouts ----------------------------------------------------------------------------------
def _frames_read(path, picked=(5, 1, 1)):
    with open_video(path) as reader:
        return reader.shape, reader[0 : len(reader)], reader.read_frames(list(picked))


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_float_thwc_tiff_written_without_axes_reads_as_written(tmp_path, channels, compression):
    # tifffile.imwrite(path, video) of a (T, H, W, C) float array keeps the shape but not the
    # axes; its pages are (W, C) rows for C other than 3 or 4 (an IndexError here before).
    video = np.random.default_rng(channels).random((7, 12, 10, channels)).astype(np.float32)
    path = tmp_path / "v.tif"
    with warnings.catch_warnings():  # C = 3 is stored as RGB, which tifffile says may change
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, video, compression=compression)
    shape, frames, picked = _frames_read(path)
    assert shape == video.shape
    np.testing.assert_array_equal(frames, video)
    np.testing.assert_array_equal(picked, video[[5, 1, 1]])


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("TYXC axes", lambda p, v: tifffile.imwrite(p, v, metadata={"axes": "TYXC"})),
        (
            "channels first",
            lambda p, v: tifffile.imwrite(
                p, np.moveaxis(v, -1, 0), photometric="minisblack", metadata={"axes": "CTYX"}
            ),
        ),
        (
            "OME channels first",
            lambda p, v: tifffile.imwrite(
                p,
                np.moveaxis(v, -1, 0),
                ome=True,
                photometric="minisblack",
                metadata={"axes": "CTYX"},
            ),
        ),
        (
            "compressed channels first",
            lambda p, v: tifffile.imwrite(
                p,
                np.moveaxis(v, -1, 0),
                compression="zlib",
                photometric="minisblack",
                metadata={"axes": "CTYX"},
            ),
        ),
        (
            "ImageJ TZCYX",
            lambda p, v: tifffile.imwrite(
                p,
                np.moveaxis(v, -1, 1).reshape(7, 1, 2, 12, 10),
                imagej=True,
                metadata={"axes": "TZCYX"},
            ),
        ),
    ],
)
def test_tiff_layouts_with_axes_read_the_same(tmp_path, video, name, write):
    path = tmp_path / "v.tif"
    write(path, video)
    shape, frames, picked = _frames_read(path)
    assert shape == video.shape, name
    np.testing.assert_array_equal(frames, video)
    np.testing.assert_array_equal(picked, video[[5, 1, 1]])


def test_rgb_and_big_endian_tiffs_read_the_same(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (4, 9, 11, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb", metadata=None)
    shape, frames, _ = _frames_read(tmp_path / "rgb.tif", picked=[2])
    assert shape == (4, 9, 11, 3)
    np.testing.assert_array_equal(frames, rgb)
    gray = np.arange(5 * 9 * 11, dtype=np.uint16).reshape(5, 9, 11)
    tifffile.imwrite(tmp_path / "be.tif", gray, byteorder=">")
    shape, frames, _ = _frames_read(tmp_path / "be.tif", picked=[2])
    assert shape == (5, 9, 11, 1)
    np.testing.assert_array_equal(frames[..., 0], gray)


def test_pages_written_one_by_one_read_as_frames(tmp_path):
    frames = np.arange(5 * 8 * 6, dtype=np.uint16).reshape(5, 8, 6)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for frame in frames:
            writer.write(frame, metadata=None, contiguous=False)
    shape, read, picked = _frames_read(path, picked=[4, 0])
    assert shape == (5, 8, 6, 1)
    np.testing.assert_array_equal(read[..., 0], frames)
    np.testing.assert_array_equal(picked[..., 0], frames[[4, 0]])


def _write_in_a_loop(path, blocks, **kwargs):
    with tifffile.TiffWriter(path) as writer:  # one tifffile series per write call
        for block in blocks:
            writer.write(block, **kwargs)


@pytest.mark.parametrize(
    ("name", "write", "expected"),
    [
        ("frame by frame", lambda p, v: _write_in_a_loop(p, v[..., 0]), lambda v: v[..., :1]),
        (
            "frame by frame, zlib",
            lambda p, v: _write_in_a_loop(p, v[..., 0], compression="zlib"),
            lambda v: v[..., :1],
        ),
        (
            "blocks of 4 frames",
            lambda p, v: _write_in_a_loop(
                p, [v[i : i + 4, ..., 0] for i in (0, 4, 8)], photometric="minisblack"
            ),
            lambda v: v[..., :1],
        ),
        ("(H, W, C) frames", lambda p, v: _write_in_a_loop(p, v), lambda v: v),
        (
            "(H, W, C) frames with axes",
            lambda p, v: _write_in_a_loop(p, v, metadata={"axes": "YXC"}),
            lambda v: v,
        ),
    ],
)
def test_a_tiff_written_in_a_loop_reads_every_frame(tmp_path, name, write, expected):
    """tifffile stores one series per write call: only the first frame was read."""
    video = np.random.default_rng(7).integers(0, 60000, (12, 20, 24, 2), dtype=np.uint16)
    path = tmp_path / "loop.tif"
    write(path, video)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) > 1, name
    want = expected(video).astype(np.float32)
    shape, frames, picked = _frames_read(path, picked=[11, 0, 5, 5])
    assert shape == want.shape, name
    np.testing.assert_array_equal(frames, want)
    np.testing.assert_array_equal(picked, want[[11, 0, 5, 5]])
    with open_video(path) as reader:
        np.testing.assert_array_equal(reader[4:9:2], want[4:9:2])


def test_a_tiff_written_in_a_loop_is_read_lazily(tmp_path):
    """Reading two frames of a frame-by-frame TIFF reads those pages, not the whole file."""
    import tracemalloc

    video = np.random.default_rng(8).integers(0, 60000, (300, 128, 128), dtype=np.uint16)
    path = tmp_path / "long.tif"
    _write_in_a_loop(path, video)  # 9.8 MB of pixels, 39 MB as float32
    with open_video(path) as reader:
        assert reader.shape == (300, 128, 128, 1)
        tracemalloc.start()
        try:
            picked = reader.read_frames([299, 3])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    np.testing.assert_array_equal(picked[..., 0], video[[299, 3]])
    assert peak < 2_000_000, peak  # two frames are 131 kB as float32


def test_tiff_series_that_form_no_video_are_refused_naming_them(tmp_path):
    path = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(np.zeros((16, 16), np.uint16))
        writer.write(np.zeros((8, 8), np.uint16))  # e.g. a thumbnail
    with pytest.raises(
        ValueError,
        match=r"mixed\.tif: the TIFF file holds 2 image series of "
        r"different shapes or dtypes \(\(16, 16\) uint16, \(8, 8\) uint16\)",
    ):
        open_video(path)
    dtypes = tmp_path / "dtypes.tif"
    with tifffile.TiffWriter(dtypes) as writer:
        writer.write(np.zeros((16, 16), np.uint16))
        writer.write(np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match=r"dtypes\.tif: .* 2 image series .*float32"):
        open_video(dtypes)


@pytest.mark.parametrize("metadata", [{}, None], ids=["tifffile metadata", "plain pages"])
def test_a_tiff_in_blocks_of_frames_or_with_a_preview_reads_every_frame(tmp_path, caplog, metadata):
    # A last block shorter than the others, and a thumbnail after the video, were refused
    # (the first had been read as its first block, the second read right before).
    video = np.arange(25 * 32 * 32, dtype=np.uint32).reshape(25, 32, 32).astype(np.uint16)
    blocks = tmp_path / "blocks.tif"
    with tifffile.TiffWriter(blocks) as writer:
        for start in range(0, 25, 10):
            writer.write(video[start : start + 10], metadata=metadata)
    preview = tmp_path / "preview.tif"
    with tifffile.TiffWriter(preview) as writer:
        for frame in video:
            writer.write(frame, metadata=metadata)
        writer.write(video[0, ::4, ::4], metadata=metadata)  # a thumbnail
    for path in (blocks, preview):
        with open_video(path) as reader:
            assert reader.shape == (25, 32, 32, 1), path
            np.testing.assert_array_equal(reader[0:25][..., 0], video)
            np.testing.assert_array_equal(reader[7:13][..., 0], video[7:13])
    assert "preview.tif: 1 small image(s) beside the video ((8, 8) uint16) left out" in caplog.text


def test_tiff_whose_frames_cannot_be_told_is_refused_saying_how_to_save_it(tmp_path):
    video = np.random.default_rng(0).random((7, 12, 10, 2)).astype(np.float32)
    no_shape = tmp_path / "rows.tif"
    tifffile.imwrite(no_shape, video, metadata=None)  # 84 pages of 10 x 2: no shape stored
    how = r"metadata=\{'axes': 'TYXC'\}"
    with pytest.raises(ValueError, match=rf"rows\.tif: 84 pages of 10 x 2 pixels.*{how}"):
        open_video(no_shape)
    many = tmp_path / "many.tif"
    tifffile.imwrite(many, np.zeros((3, 8, 8, 12), np.float32))  # 12 "channels": likely not
    with pytest.raises(ValueError, match=rf"shape \(3, 8, 8, 12\).*12 channels.*{how}"):
        open_video(many)
    five = tmp_path / "five.tif"
    tifffile.imwrite(five, np.zeros((3, 8, 8, 2, 2), np.float32))
    with pytest.raises(ValueError, match=rf"shape \(3, 8, 8, 2, 2\).*{how}"):
        open_video(five)


def test_folder_given_as_video_says_so(tmp_path):
    from labsession.errors import ConfigError

    folder = tmp_path / "recordings"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"recordings is a folder; give a video file.*motion run"):
        open_video(folder)
    tif_folder = tmp_path / "looks.tif"
    tif_folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        open_video(tif_folder)


@pytest.mark.parametrize(
    "write",
    [
        lambda p, rng: tifffile.imwrite(p, rng.random((12, 10), dtype=np.float32)),
        lambda p, rng: tifffile.imwrite(p, rng.random((1, 12, 10), dtype=np.float32)),
        lambda p, rng: tifffile.imwrite(p, rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)),
        lambda p, rng: tifffile.imwrite(
            p, rng.random((12, 10), dtype=np.float32), compression="zlib"
        ),
    ],
    ids=["one-page", "one-frame-stack", "one-rgb-page", "one-page-zlib"],
)
def test_a_tiff_of_one_frame_reads_it(tmp_path, write):
    """A file holding one frame has no time axis left: it opened, then every read failed."""
    path = tmp_path / "one.tif"
    write(path, np.random.default_rng(1))
    expected = tifffile.imread(path).astype(np.float32).reshape(12, 10, -1)
    with open_video(path) as reader:
        assert reader.shape == (1, 12, 10, expected.shape[-1])
        np.testing.assert_array_equal(reader[0:1][0], expected)


def test_a_named_pipe_given_as_video_is_refused_unopened(tmp_path):
    """Opening a FIFO blocks until a writer comes: it is refused before any open."""
    fifo = tmp_path / "video.tif"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"video\.tif is a named pipe, not a video file"):
        open_video(fifo)


def test_broken_tiffs_are_value_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.tif: not a readable TIFF file") as info:
        open_video(empty)
    assert "\n" not in str(info.value)

    full = tmp_path / "full.tif"  # uncompressed pages, then cut: more declared than held
    tifffile.imwrite(full, np.zeros((8, 64, 64), np.float32), contiguous=False)
    cut = tmp_path / "cut.tif"
    raw = full.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2] + raw[-2048:])
    with pytest.raises(ValueError, match=r"cut\.tif"), open_video(cut) as reader:
        reader[0 : reader.shape[0]]

    packed = tmp_path / "packed.tif"  # a zlib stream cut short inside a page
    tifffile.imwrite(
        packed, np.random.default_rng(0).random((2, 64, 64), np.float32), compression="zlib"
    )
    page = tifffile.TiffFile(packed).pages[1]
    offset, count = page.dataoffsets[0], page.databytecounts[0]
    page.parent.close()
    raw = bytearray(packed.read_bytes())
    raw[offset + 2 : offset + count] = bytes(count - 2)
    packed.write_bytes(bytes(raw))
    reader = open_video(packed)
    with reader, pytest.raises(ValueError, match=r"packed\.tif: cannot read frames of the TIFF"):
        reader[0:2]


def test_a_compressed_tiff_declaring_huge_frames_is_a_value_error(tmp_path):
    """A small zlib file whose header claims 200,000 x 200,000 frames: one line, no
    MemoryError traceback (2 frames would be 298 GiB as float32)."""
    huge = tmp_path / "huge.tif"
    tifffile.imwrite(huge, np.zeros((2, 16, 16), np.uint16), compression="zlib")
    with tifffile.TiffFile(huge, mode="r+b") as tif:
        for page in tif.pages:
            page.tags["ImageWidth"].overwrite(200_000)
            page.tags["ImageLength"].overwrite(200_000)
    with open_video(huge) as reader:
        assert reader.shape[1:3] == (200_000, 200_000)
        with pytest.raises(ValueError, match=r"huge\.tif: .*200000x200000") as info:
            reader[0:2]
    assert "\n" not in str(info.value)

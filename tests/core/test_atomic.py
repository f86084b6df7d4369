import json
import re

import numpy as np
import pytest

from labsession.core.atomic import (
    atomic_path,
    atomic_save_npy,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
    create_temp_dir,
    create_temp_file,
    flush_files,
    flush_trees,
    fsync_file,
)


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"precious")

    def write_half_then_fail():
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_half_then_fail()
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_json_refuses_nan_without_touching_target(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError, match="JSON"):
        atomic_write_json(target, {"a": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1}


def test_npy_and_npz_round_trip(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(np.load(atomic_save_npy(tmp_path / "a.npy", arr)), arr)
    with np.load(atomic_save_npz(tmp_path / "b.npz", u=arr, v=-arr)) as z:
        assert sorted(z.files) == ["u", "v"]
        np.testing.assert_array_equal(z["v"], -arr)


def test_temporary_name_sits_beside_the_target_and_is_hidden(tmp_path):
    target = tmp_path / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert re.fullmatch(r"\.out\.json\.[0-9a-f]{8}\.tmp", tmp.name)
        assert tmp.is_file()  # created, empty, for writers that open by path
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_create_temp_never_reuses_a_name(tmp_path):
    files = {create_temp_file(tmp_path, prefix=".x.", suffix=".npy") for _ in range(50)}
    dirs = {create_temp_dir(tmp_path, prefix=".x.", suffix=".tmp") for _ in range(50)}
    assert len(files) == len(dirs) == 50
    assert all(p.is_file() and p.stat().st_size == 0 for p in files)
    assert all(p.is_dir() and not any(p.iterdir()) for p in dirs)


def test_flush_helpers_accept_trees_and_nothing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("x")
    (tmp_path / "g.txt").write_text("y")
    flush_files([])
    flush_files([tmp_path / "g.txt", tmp_path / "a" / "b" / "f.txt"])
    flush_trees([tmp_path])
    fsync_file(tmp_path / "g.txt")
    with pytest.raises(FileNotFoundError):
        flush_files([tmp_path / "missing"])


def test_rename_no_replace_never_replaces_even_an_empty_folder(tmp_path):
    from labsession.core.atomic import rename_no_replace

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "f").write_text("new")
    dst.mkdir()  # empty: os.rename would replace it
    with pytest.raises(FileExistsError):
        rename_no_replace(src, dst)
    assert (src / "f").read_text() == "new"
    assert list(dst.iterdir()) == []
    dst.rmdir()
    rename_no_replace(src, dst)
    assert (dst / "f").read_text() == "new"
    assert not src.exists()


def test_a_target_that_cannot_be_created_is_named_not_its_temporary_file(tmp_path):
    """``labsession motion synth /proc/x.tif`` said "error: /proc/.x.tif.bd7b2f9e.tmp: No such
    file or directory": a name the user never gave. The error names the target and its folder,
    and keeps its type and errno."""
    import errno

    target = tmp_path / "missing" / "out.tif"
    with pytest.raises(FileNotFoundError) as caught, atomic_path(target):
        pass
    assert caught.value.errno == errno.ENOENT
    assert caught.value.filename == str(target)
    assert f"cannot create a file in {target.parent}" in str(caught.value)
    assert ".tmp" not in str(caught.value)

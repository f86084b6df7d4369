"""Output folders that a failed call does not leave behind."""

from __future__ import annotations

import pytest

from labsession.core.paths import output_folder


def _fail_in(target, write=None, error=KeyboardInterrupt):
    with output_folder(target) as folder:
        assert folder == target
        assert folder.is_dir()
        if write is not None:
            (folder / write).write_text("written before the failure")
        raise error("the call fails")


def test_a_failed_block_removes_the_empty_folder_it_created(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(KeyboardInterrupt):
        _fail_in(target)
    assert not target.exists()
    assert (tmp_path / "a").is_dir()  # a parent it made is left: only the folder itself goes


def test_what_holds_anything_or_was_there_is_kept(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(ValueError, match="the call fails"):
        _fail_in(target, write="result.txt", error=ValueError)
    assert (target / "result.txt").read_text() == "written before the failure"
    (target / "result.txt").unlink()  # there before the next call, empty
    with pytest.raises(ValueError, match="the call fails"):
        _fail_in(target, error=ValueError)
    assert target.is_dir()
    with output_folder(target) as folder:  # success: nothing removed
        pass
    assert folder.is_dir()

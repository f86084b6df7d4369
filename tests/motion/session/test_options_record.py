"""The stage-1 options record follows what the options hold, not where the session lies."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tifffile

from labsession.motion.session import SessionConfig
from labsession.motion.session._resume import stage1_options_record


def _record(root: Path, **flow: object) -> dict:
    config = SessionConfig.from_mapping(
        {"root": root, "flow_backend": "diso", "flow_options": flow}
    )
    return stage1_options_record(config.stage1_options(root / "x.tif", root / "out"))


def test_in_memory_arrays_are_recorded_by_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    r1, r2 = rng.random((8, 8)).astype(np.float32), rng.random((8, 8)).astype(np.float32)
    assert _record(tmp_path, reference_frames=r1) == _record(tmp_path, reference_frames=r1.copy())
    assert _record(tmp_path, reference_frames=r1) != _record(tmp_path, reference_frames=r2)
    w1, w2 = np.ones((8, 8, 2)), np.full((8, 8, 2), 0.1)
    assert _record(tmp_path, weight=w1) != _record(tmp_path, weight=w2)


def test_a_reference_file_is_recorded_by_content_not_place(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    tifffile.imwrite(a / "reference.tif", np.zeros((8, 8), np.float32))
    (a / "opts.toml").write_text('reference_frames = "reference.tif"\n')
    config_a = SessionConfig.from_mapping({"root": a, "flow_options": a / "opts.toml"})
    rec_a = stage1_options_record(config_a.stage1_options(a / "x.tif", a / "out"))
    b = tmp_path / "b"
    shutil.copytree(a, b)  # times kept, as cp -a
    config_b = SessionConfig.from_mapping({"root": b, "flow_options": b / "opts.toml"})
    assert stage1_options_record(config_b.stage1_options(b / "x.tif", b / "out")) == rec_a
    tifffile.imwrite(b / "reference.tif", np.ones((8, 8, 2), np.float32))  # another image
    assert stage1_options_record(config_b.stage1_options(b / "x.tif", b / "out")) != rec_a


def test_a_field_the_record_lacks_counts_as_its_default(finished_copy) -> None:
    """A status written before a field was added to OFOptions: redone only if it is set."""
    import json

    from labsession.motion.session import recording_dir, session_state

    from .conftest import fast_config

    config = finished_copy
    folder = recording_dir(config, config.root / "rec_0.tif")
    status = json.loads((folder / "status.json").read_text())
    del status["stage1_options"]["cc_up"]  # as if cc_up were new
    status["stage1_options"]["gone"] = 1  # and "gone" removed since
    (folder / "status.json").write_text(json.dumps(status))
    assert session_state(config)["recordings"][0]["stage1"] == "done"
    changed = fast_config(config.root, flow_options={**config.flow_options, "cc_up": 2})
    assert session_state(changed)["recordings"][0]["stage1"] == (
        "incomplete: the stage-1 options changed since it ran: cc_up"
    )

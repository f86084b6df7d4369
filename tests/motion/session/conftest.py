"""Fixtures of the session tests: a synthetic 3-recording session and a finished run of it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from labsession.motion.session import SessionConfig, make_synthetic_session, run_session

#: (dx, dy) content offset of each recording; rec_1 is the (middle) center.
OFFSETS = ((-1.5, 1.0), (0.0, 0.0), (2.25, -1.75))
N_FRAMES = 24
SHAPE = (48, 48)


def fast_config(root: Path, **overrides: Any) -> SessionConfig:
    """A config with the fast settings used where accuracy is not the point."""
    data: dict[str, Any] = {
        "root": root,
        "flow_backend": "diso",
        "stage1_quality_setting": "fast",
        "sigma_smooth": 1.0,
        "n_workers": 1,
        "flow_options": {"reference_frames": list(range(N_FRAMES)), "buffer_size": 16},
    }
    data.update(overrides)
    return SessionConfig.from_mapping(data)


def fast_config_text(**overrides: str) -> str:
    """The same settings as TOML lines (``root`` relative to the config file)."""
    lines = {
        "root": '"data"',
        "flow_backend": '"diso"',
        "stage1_quality_setting": '"fast"',
        "sigma_smooth": "1.0",
        "n_workers": "1",
    }
    lines.update(overrides)
    body = "\n".join(f"{k} = {v}" for k, v in lines.items())
    return (
        body + f"\n\n[flow_options]\nreference_frames = {list(range(N_FRAMES))}\nbuffer_size = 16\n"
    )


@pytest.fixture(scope="session")
def session_data(tmp_path_factory: pytest.TempPathFactory):
    """Three 48x48, 24-frame TIFF recordings of one field at known offsets (read-only)."""
    folder = tmp_path_factory.mktemp("session_data")
    return make_synthetic_session(folder, offsets=OFFSETS, n_frames=N_FRAMES, shape=SHAPE)


@pytest.fixture(scope="session")
def finished_session(tmp_path_factory: pytest.TempPathFactory, session_data):
    """The session run through stages 1-3 once, in-process (read-only: copy before changing)."""
    root = tmp_path_factory.mktemp("finished") / "data"
    shutil.copytree(session_data.files[0].parent, root)
    config = fast_config(root)
    final = run_session(config, progress=False)
    return config, final


@pytest.fixture
def fresh_copy(tmp_path: Path, session_data) -> Path:
    """A writable copy of the raw recordings only (times kept)."""
    root = tmp_path / "data"
    shutil.copytree(session_data.files[0].parent, root)
    return root


@pytest.fixture
def finished_copy(tmp_path: Path, finished_session) -> SessionConfig:
    """A writable copy of the finished session (times kept, so resume sees it complete)."""
    config, _ = finished_session
    root = tmp_path / "data"
    shutil.copytree(config.root, root)
    return fast_config(root)

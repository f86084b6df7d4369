"""Shared pytest configuration: deterministic hypothesis profile for CI, the X display, a
pseudo-terminal, a small file system that fills up."""

import os
import pty
import shutil
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, settings

from labsession.testing import xvfb_display

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def display():
    """Name of the X display windows open on: the one set, or an Xvfb of the test session's own.

    CI installs Xvfb and Mesa, so GUI tests never skip.
    """
    with xvfb_display() as name:
        yield name


@pytest.fixture
def gui_state_dir(tmp_path, monkeypatch):
    """Keep imgui's window layouts out of the user's state folder."""
    folder = tmp_path / "state"
    monkeypatch.setenv("LABSESSION_STATE_DIR", str(folder))
    return folder


class PseudoTerminal:
    """A pseudo-terminal whose output a thread collects: give :attr:`fd` to a child process as
    its stderr (a terminal to it), then read what it drew with :meth:`output`."""

    def __init__(self) -> None:
        self._primary, self.fd = pty.openpty()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._primary, 65536)
            except OSError:  # EIO once the other end is closed
                return
            if not data:
                return
            self._chunks.append(data)

    def output(self) -> str:
        """Close the child's end, wait for the rest and return everything drawn, decoded."""
        self.close()
        return b"".join(self._chunks).decode(errors="replace")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self._reader.join(timeout=30)
            os.close(self._primary)


@pytest.fixture
def pseudo_terminal():
    """A :class:`PseudoTerminal`, closed after the test."""
    terminal = PseudoTerminal()
    yield terminal
    terminal.close()


class SmallDisk:
    """A folder on which a child process sees a tmpfs of its own size: a real file system that
    fills up, without root (``unshare -rm``: a user and a mount namespace of the child's own).

    Only the child (and what it starts) sees the tmpfs; outside it the folder stays empty.
    """

    #: Python source of ``fill(path, leave=0)``, for a child's script: write ``path`` until
    #: the file system refuses (ENOSPC), then give back ``leave`` bytes.
    FILL = r"""
import errno, os

def fill(path, leave=0):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\xff" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    os.close(fd)
"""

    def __init__(self, folder: os.PathLike) -> None:
        self.folder = folder

    def run(self, size: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Mount a tmpfs of ``size`` (``"4m"``) on :attr:`folder` and run ``args`` there."""
        script = 'mount -t tmpfs -o size="$1" none "$0" && shift && cd "$0" && exec "$@"'
        return subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, str(self.folder), size, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _unshare_problem() -> str | None:
    """Why ``unshare -rm`` cannot mount a tmpfs here, or None when it can."""
    if shutil.which("unshare") is None:
        return "the 'unshare' program (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m none "$0"', "/tmp"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"'unshare -rm' cannot mount a tmpfs here: {probe.stderr.strip()}"
    return None


@pytest.fixture
def small_disk(tmp_path):
    """A :class:`SmallDisk` on ``tmp_path / "small_disk"``; fails (never skips) where user and
    mount namespaces are not available, saying why."""
    problem = _unshare_problem()
    if problem:
        pytest.fail(
            f"this test needs a real full file system: {problem}. It mounts a small tmpfs in a "
            "user and mount namespace of its own ('unshare -rm')"
        )
    folder = tmp_path / "small_disk"
    folder.mkdir()
    return SmallDisk(folder)

"""Every file and folder labsession creates follows the umask (lab mates share servers).

Each case runs in a fresh interpreter that sets its umask *after* importing labsession (so no
umask read at import could pass), writes with each writer, and reports every mode it finds.
"""

import json
import stat
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, os, stat, sys
    from pathlib import Path

    import numpy as np

    from labsession.core.archive import pack_tar, safe_extract
    from labsession.core.atomic import atomic_save_npy, atomic_save_npz, atomic_write_json
    from labsession.motion import VideoWriter
    from labsession.recording import Session, StreamInfo
    from labsession.runs import archive_session_dir, restore_session_archive

    os.umask(int(sys.argv[2], 8))
    root = Path(sys.argv[1])

    def modes(folder):
        found = {}
        for path in [folder, *sorted(folder.rglob("*"))]:
            found[path.relative_to(root).as_posix()] = path.lstat().st_mode
        return found

    atomic_write_json(root / "a.json", {"x": 1})
    atomic_save_npy(root / "a.npy", np.arange(3))
    atomic_save_npz(root / "a.npz", v=np.arange(3))

    run = root / "runs" / "2026Y-01M-02D-03h04m05s_abcd"
    (run / "logs").mkdir(parents=True)
    (run / "logs" / "stdout.log").write_text("log")
    (run / "result.csv").write_text("1,2")
    restored = restore_session_archive(archive_session_dir(run))
    pack_tar(restored, root / "runs" / "copy.tar.xz", arcname="copy")
    safe_extract(root / "runs" / "copy.tar.xz", root / "runs" / "extracted")

    (root / "motion").mkdir()
    for fmt, suffix in (("HDF5", ".h5"), ("MAT", ".mat"), ("TIFF", ".tif"), ("NPZ", ".npz"),
                        ("ZARR", ".zarr")):
        with VideoWriter(root / "motion" / f"out{suffix}", fmt, shape=(2, 4, 4, 1)) as writer:
            writer.write(np.zeros((2, 4, 4, 1), np.float32))

    session = Session(root / "sessions")
    session.init_stream("emg", StreamInfo(2, 100.0))
    session.append("emg", np.zeros((50, 2), np.float32), np.arange(50) / 100.0)
    session.add_label(0, timestamp=0.1)
    session.save_meta("umask-test", class_names=["rest"])
    session.flush()
    folder = modes(session.path)
    zip_path = session.pack_to_zip()
    session.close()
    safe_extract(zip_path, root / "sessions" / "unzipped")

    print(json.dumps({"session folder": folder, "after": modes(root)}))
    """
)


def _write_everything(folder, umask):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), f"{umask:o}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_every_file_and_folder_follows_the_umask(tmp_path, umask, file_mode, dir_mode):
    root = tmp_path / "out"
    root.mkdir()
    root.chmod(dir_mode)
    found = _write_everything(root, umask)
    after = found["after"]
    expected_files = [
        "a.json",
        "a.npy",
        "a.npz",
        "runs/2026Y-01M-02D-03h04m05s_abcd.tar.gz",
        "runs/2026Y-01M-02D-03h04m05s_abcd/logs/stdout.log",
        "runs/2026Y-01M-02D-03h04m05s_abcd/result.csv",
        "runs/copy.tar.xz",
        "runs/extracted/copy/result.csv",
        "motion/out.h5",
        "motion/out.mat",
        "motion/out.tif",
        "motion/out.npz",
        "motion/out.zarr/zarr.json",
        "sessions/unzipped/meta.json",
    ]
    assert set(expected_files) <= set(after)
    assert any(name.endswith(".session.zip") for name in after)
    assert any(name.endswith("/meta.json") for name in found["session folder"])
    for name, st_mode in [*after.items(), *found["session folder"].items()]:
        assert stat.S_ISDIR(st_mode) or stat.S_ISREG(st_mode), name
        want = dir_mode if stat.S_ISDIR(st_mode) else file_mode
        mode = stat.S_IMODE(st_mode)
        assert mode == want, f"{name}: {stat.filemode(st_mode)}, expected {stat.filemode(want)}"
    assert not [
        name for name in after if name.rpartition("/")[2].startswith(".") and name != "."
    ]  # no temps

"""TrainingData: arrays for scikit-learn, grouped by session; the docs and example scripts run."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import GroupKFold, cross_val_score

from labsession.recording import (
    Session,
    StreamInfo,
    TrainingData,
    iter_labeled_windows,
    open_session_store,
)
from labsession.recording.features import feature_matrix
from labsession.testing import class_patterns, emg_like, record_synthetic_session

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    return [
        record_synthetic_session(base, fs=1000.0, phase_seconds=0.8, repeats=2, seed=0),
        record_synthetic_session(base, fs=1000.0, phase_seconds=0.8, repeats=2, seed=1, pack=False),
        record_synthetic_session(base, fs=1000.0, phase_seconds=0.8, repeats=2, seed=2),
    ]


def test_to_arrays_raw_windows_labels_and_groups(paths):
    data = TrainingData(paths)
    X, y, groups = data.to_arrays("emg", 0.2, 0.1)
    expected = [
        (w, c, g)
        for g, p in enumerate(paths)
        for w, _, c in iter_labeled_windows(p, "emg", 0.2, 0.1, skip_first=True)
    ]
    assert X.shape == (len(expected), 8, 200)
    assert X.dtype == np.float32
    assert y.dtype == np.int64
    assert groups.dtype == np.int64
    np.testing.assert_array_equal(X, np.stack([w for w, _, _ in expected]))
    np.testing.assert_array_equal(y, [c for _, c, _ in expected])
    np.testing.assert_array_equal(groups, [g for _, _, g in expected])
    assert set(groups.tolist()) == {0, 1, 2}
    assert data.paths == [Path(p) for p in paths]
    assert data.class_names == ["Rest", "Fist", "Open"]
    assert TrainingData(paths, ["r", "f", "o"]).class_names == ["r", "f", "o"]


def test_first_segment_skipped_by_default(paths):
    data = TrainingData(paths[:1])
    default = list(data.windows("emg", 0.2, 0.1))
    kept = list(data.windows("emg", 0.2, 0.1, skip_first=False))
    with open_session_store(paths[0]) as store:
        first, second = store.label_track[:2]
    per_segment = (800 - 200) // 100 + 1
    assert len(kept) - len(default) == per_segment
    assert all(ts[0] >= second.timestamp - 1e-9 for _, ts, _ in default)
    assert kept[0][1][0] == pytest.approx(first.timestamp)
    _, y_kept, _ = data.to_arrays("emg", 0.2, 0.1, skip_first=False)
    assert len(y_kept) == len(kept)


def test_to_arrays_with_features_in_batches(paths, monkeypatch):
    from labsession.recording import _training

    data = TrainingData(paths)
    X_raw, y_raw, g_raw = data.to_arrays("emg", 0.2, 0.05, classes=[1, 2])
    monkeypatch.setattr(_training, "_BATCH", 7)  # many batches, the last one partial
    X, y, groups = data.to_arrays("emg", 0.2, 0.05, classes=[1, 2], features=["rms", "zc"])
    assert X.shape == (len(y_raw), 16)
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, feature_matrix(X_raw, ["rms", "zc"]))
    np.testing.assert_array_equal(y, y_raw)
    np.testing.assert_array_equal(groups, g_raw)
    assert set(y.tolist()) == {1, 2}


def record_subject_session(base, seed, *, fs=1000.0, phase=1.0):
    """A session of one subject (same muscles per class, new effort and noise per session)."""
    rng = np.random.default_rng(seed)
    patterns = class_patterns(3, 8, seed=0)
    with Session(base, class_names=["Rest", "Fist", "Open"]) as session:
        session.init_stream("emg", StreamInfo(8, fs))
        n = int(phase * fs)
        for i, cls in enumerate([0, 1, 0, 2] * 3 + [0]):
            session.add_label(cls, timestamp=i * phase)
            effort = rng.uniform(0.7, 1.3, size=8)
            data = emg_like(np.tile(patterns[cls] * effort, (n, 1)), fs, rng=rng)
            session.append("emg", data, i * phase + np.arange(n) / fs)
        return session.pack_to_zip()


def test_grouped_cross_validation_learns_the_classes(tmp_path):
    paths = [record_subject_session(tmp_path, seed) for seed in range(3)]
    X, y, groups = TrainingData(paths).to_arrays(
        "emg", 0.2, 0.05, features=["rms", "mav", "wl", "zc", "ssc"]
    )
    assert np.bincount(groups).tolist() == [len(y) // 3] * 3
    scores = cross_val_score(LinearDiscriminantAnalysis(), X, y, groups=groups, cv=GroupKFold(3))
    assert scores.min() > 0.9, scores


def test_errors_name_the_problem(paths, tmp_path):
    data = TrainingData(paths)
    with pytest.raises(ValueError, match=r"no training windows.*as long as one window"):
        data.to_arrays("emg", 0.2, 0.1, classes=[9])
    with pytest.raises(ValueError, match="no session recorded stream"):
        data.to_arrays("eeg", 0.2, 0.1)
    with pytest.raises(ValueError, match="hop_seconds"):
        data.to_arrays("emg", 0.2, -1)
    with pytest.raises(ValueError, match="unknown feature"):
        data.to_arrays("emg", 0.2, 0.1, features=["nope"])
    with pytest.raises(ValueError, match="paths is empty"):
        TrainingData([])
    # Sessions with different channel counts cannot share one X.
    other = Session(tmp_path, class_names=["Rest", "Fist"])
    other.init_stream("emg", StreamInfo(4, 1000.0))
    other.append("emg", np.ones((3000, 4), np.float32), np.arange(3000) / 1000)
    other.add_label(0, timestamp=0.0)
    other.add_label(1, timestamp=1.0)
    other.close()
    with pytest.raises(ValueError, match="change shape"):
        TrainingData([paths[0], other.path]).to_arrays("emg", 0.2, 0.1)
    with pytest.raises(ValueError, match="change shape"):
        TrainingData([paths[0], other.path]).to_arrays("emg", 0.2, 0.1, features="rms")


def _docs_example() -> str:
    text = (ROOT / "docs" / "training.md").read_text()
    section = text.split("## A full example", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_docs_example_runs(tmp_path):
    script = tmp_path / "docs_example.py"
    script.write_text(_docs_example())
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "leave-one-session-out accuracy:" in result.stdout


def test_example_script_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_classifier.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    accuracy = re.search(r"replayed session: ([0-9.]+)", result.stdout)
    assert accuracy, result.stdout
    assert float(accuracy.group(1)) > 0.85
    assert len(list(tmp_path.glob("*.session.zip"))) == 4


def test_a_parent_folder_stands_for_every_session_inside_sorted_by_name(paths, tmp_path):
    from labsession.errors import SessionError

    parent = paths[0].parent
    assert {p.parent for p in paths} == {parent}
    by_name = sorted(paths, key=lambda p: p.name)
    data = TrainingData(parent)
    assert data.paths == by_name
    assert len(data) == 3
    X, y, groups = data.to_arrays("emg", 0.2, 0.1)
    X_listed, y_listed, groups_listed = TrainingData(by_name).to_arrays("emg", 0.2, 0.1)
    np.testing.assert_array_equal(X, X_listed)
    np.testing.assert_array_equal(y, y_listed)
    np.testing.assert_array_equal(groups, groups_listed)
    # parents and sessions mix; what is no session (a file, a hidden entry) is left out
    (tmp_path / "notes.txt").write_text("not a session")
    (tmp_path / ".partial.session.zip").write_bytes(b"")
    extra = record_synthetic_session(tmp_path / "more", fs=1000.0, phase_seconds=0.8, seed=3)
    mixed = TrainingData([paths[1], tmp_path / "more"])
    assert mixed.paths == [paths[1], extra]
    with pytest.raises(SessionError, match=f"no sessions in {re.escape(str(tmp_path))}"):
        TrainingData(tmp_path)  # only "more/" inside, a parent itself: not searched deeper
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SessionError, match=r"no sessions in .*empty"):
        TrainingData([paths[0], empty])


def test_a_damaged_session_folder_is_not_taken_for_a_parent(tmp_path):
    damaged = tmp_path / "2026-01-01_00-00-00_0badc0de"
    (damaged / "emg.zarr").mkdir(parents=True)  # arrays but no meta.json
    data = TrainingData(damaged)
    assert data.paths == [damaged]
    with pytest.raises(ValueError, match=r"no meta\.json"):
        data.to_arrays("emg", 0.2, 0.1)


def test_links_in_a_parent_are_left_out_and_a_linked_session_opens_by_its_own_path(paths, tmp_path):
    from labsession.recording import find_sessions

    parent = tmp_path / "parent"
    parent.mkdir()
    elsewhere = paths[0]  # a zip outside the parent
    (parent / elsewhere.name).symlink_to(elsewhere)
    (parent / "linked_folder").symlink_to(tmp_path, target_is_directory=True)
    real = parent / paths[2].name  # a zip copied in
    real.write_bytes(paths[2].read_bytes())
    assert find_sessions(parent) == [real]
    assert TrainingData(parent).paths == [real]
    assert TrainingData(parent / elsewhere.name).paths == [parent / elsewhere.name]


def test_a_folder_beside_its_own_pack_is_one_recording(tmp_path, caplog):
    """A pack stopped between putting the zip in place and removing the folder leaves both: a
    parent lists the recording once (the folder, the source, as pack takes it), so its windows
    are not trained on twice in two groups; another recording's look-alike zip stays listed."""
    from labsession.recording import find_sessions

    parent = tmp_path / "sessions"
    folder = record_synthetic_session(parent, fs=1000.0, phase_seconds=0.8, seed=4, pack=False)
    shutil.copytree(folder, tmp_path / "kept")
    zip_path = Session.attach(folder).pack_to_zip()
    shutil.move(tmp_path / "kept", folder)  # the state the stopped pack left
    assert sorted(p.name for p in parent.iterdir()) == [folder.name, zip_path.name]

    assert find_sessions(parent) == [folder]
    assert f"{zip_path}: left out, an earlier pack of {folder.name}" in caplog.text
    X, y, groups = TrainingData(parent).to_arrays("emg", 0.2, 0.1)
    X1, y1, _ = TrainingData(zip_path).to_arrays("emg", 0.2, 0.1)
    np.testing.assert_array_equal(X, X1)
    np.testing.assert_array_equal(y, y1)
    assert set(groups.tolist()) == {0}

    other = record_synthetic_session(tmp_path / "other", fs=1000.0, phase_seconds=0.8, seed=5)
    look_alike = parent / f"{folder.name}_other.session.zip"  # another recording, a pack's name
    shutil.move(other, look_alike)
    assert find_sessions(parent) == [folder, look_alike]
    assert sorted(p.name for p in parent.iterdir()) == sorted(
        [folder.name, zip_path.name, look_alike.name]
    )  # nothing is removed by listing

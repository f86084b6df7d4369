"""Session and SessionStore behave as MyoGestic's (issue 20): live stores, a pack that replaces
the zip, session names and facts (extras, control_space) saved and read back."""

import json
import os
import shutil
import threading
import zipfile

import numpy as np
import pytest
import zarr
import zarr.storage

from labsession.core.archive import pack_zip
from labsession.errors import ArchiveError, SessionError
from labsession.recording import Session, StreamInfo, open_session_store
from labsession.recording._layout import session_slug
from labsession.testing import wait_until


def ramp(start, n, n_channels=3, fs=1000.0):
    index = np.arange(start, start + n)
    return (index[:, None] * 10 + np.arange(n_channels)).astype(np.float32), 100.0 + index / fs


def read_like_myogestic(zip_path):
    """What MyoGestic 2.6.2's ``open_session_store`` does with a zip: a ``.session.zip`` name,
    ``meta.json`` and ``labels.json`` at the root, each stream's arrays opened with Zarr."""
    assert zip_path.name.endswith(".session.zip")
    with zipfile.ZipFile(zip_path) as zf:
        meta = json.loads(zf.read("meta.json"))
        labels = json.loads(zf.read("labels.json"))
    store = zarr.storage.ZipStore(zip_path, mode="r")
    try:
        arrays = {
            name: (
                np.array(zarr.open_array(store=store, path=f"{name}.zarr", mode="r")),
                np.array(zarr.open_array(store=store, path=f"{name}_timestamps.zarr", mode="r")),
            )
            for name in meta["streams"]
        }
    finally:
        store.close()
    return meta, labels, arrays


# -- stores ------------------------------------------------------------------------------------
def test_stores_read_right_after_append_hold_every_sample(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(3, 1000.0))
    data, ts = ramp(0, 250)  # a quarter of a chunk: the writer waits up to 1 s to write it
    session.append("emg", data, ts)
    # append returned without writing (it never waits for the disk) ...
    assert session.stores.peek("emg").shape == (0, 3)
    # ... and reading the stores, as MyoGestic's code does, shows every sample appended.
    assert session.stores["emg"].shape == (250, 3)
    np.testing.assert_array_equal(np.array(session.stores["emg"]), data)
    np.testing.assert_array_equal(session.ts_stores["emg"][:], ts)

    more, more_ts = ramp(250, 1500)
    thread = threading.Thread(target=session.append, args=("emg", more, more_ts))
    thread.start()
    thread.join()
    np.testing.assert_array_equal(session.stores["emg"][:], np.concatenate([data, more]))
    assert session.ts_stores["emg"].shape == (1750,)
    assert "emg" in session.stores
    assert list(session.stores) == ["emg"]
    assert len(session.ts_stores) == 1
    session.close()
    assert session.stores["emg"].shape == (1750, 3)  # after close: as written


def test_stores_of_a_failed_session_raise_instead_of_showing_fewer_samples(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 100))
    shutil.rmtree(session.path / "emg.zarr")  # the next write fails
    (session.path / "emg.zarr").write_text("not a folder")
    with pytest.raises(SessionError, match="writing to disk failed"):
        session.stores["emg"]
    with pytest.raises(SessionError):
        session.close()


# -- pack replaces the zip ---------------------------------------------------------------------
def test_pack_replaces_a_zip_of_the_same_name(tmp_path):
    session = Session(tmp_path, class_names=["Rest"])
    session.init_stream("emg", StreamInfo(3, 1000.0))
    data, ts = ramp(0, 1200)
    session.append("emg", data[:700], ts[:700])
    session.save_meta()
    zip_path = session.path.with_name(session.path.name + ".session.zip")
    pack_zip(session.path, zip_path)  # an earlier pack, of 700 samples and no label
    session.append("emg", data[700:], ts[700:])
    session.add_label(0, timestamp=100.5)

    assert session.pack_to_zip() == zip_path
    meta, labels, arrays = read_like_myogestic(zip_path)
    assert meta["streams"]["emg"]["n_channels"] == 3
    assert labels == [{"timestamp": 100.5, "class_index": 0}]
    np.testing.assert_array_equal(arrays["emg"][0], data)
    np.testing.assert_array_equal(arrays["emg"][1], ts)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [zip_path.name]


def test_a_failed_pack_leaves_the_earlier_zip_as_it_was(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 500))
    session.close()
    folder = session.path
    zip_path = folder.with_name(folder.name + ".session.zip")
    pack_zip(folder, zip_path)  # an earlier pack, which the next one may replace
    earlier = zip_path.read_bytes()
    os.mkfifo(folder / "pipe")  # cannot be archived: the pack fails after it started

    with pytest.raises(ArchiveError, match=r"pipe: only regular files and folders"):
        session.pack_to_zip()
    assert zip_path.read_bytes() == earlier
    assert not list(tmp_path.glob(".*.tmp"))
    with open_session_store(folder) as store:
        assert store.n_samples("emg") == 500

    (folder / "pipe").unlink()
    assert session.pack_to_zip() == zip_path
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == 500
    assert not folder.exists()


# -- names and facts ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Pilot 3: Müller", "pilot-3-muller"),
        ("  force  calib / v2 ", "force-calib-v2"),
        ("***", ""),
        ("Ω", ""),
        ("x" * 80, "x" * 60),
        (None, ""),
    ],
)
def test_session_slug(name, slug):
    assert session_slug(name) == slug


def test_name_extras_and_control_space_are_saved_and_read_back(tmp_path):
    calibration = {"gain": np.float32(1.5), "offsets": np.array([0.25, -0.5]), "ok": np.bool_(1)}
    session = Session(
        tmp_path, name="Pilot 3: Müller", extras={"force_calibration": calibration, "n": 2}
    )
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 300))
    session.save_meta("my-app", ["Rest", "Fist"], control_space={"dofs": ["thumb", "index"]})
    meta = json.loads((session.path / "meta.json").read_text())
    facts = {"force_calibration": {"gain": 1.5, "offsets": [0.25, -0.5], "ok": True}, "n": 2}
    assert meta["name"] == "Pilot 3: Müller"
    assert meta["extras"] == facts
    assert meta["control_space"] == {"dofs": ["thumb", "index"]}
    assert meta["app_name"] == "my-app"

    folder = session.path
    zip_path = session.pack_to_zip()
    assert zip_path.name == f"{folder.name}_pilot-3-muller.session.zip"
    with open_session_store(zip_path) as store:
        assert (store.name, store.extras, store.control_space) == (
            "Pilot 3: Müller",
            facts,
            {"dofs": ["thumb", "index"]},
        )
        assert store.class_names == ["Rest", "Fist"]
    zipped_meta, _, arrays = read_like_myogestic(zip_path)  # MyoGestic reads it as its own
    assert zipped_meta["class_names"] == ["Rest", "Fist"]
    assert arrays["emg"][0].shape == (300, 3)


def test_a_session_without_name_or_facts_writes_none_of_their_keys(tmp_path):
    with Session(tmp_path) as session:
        pass
    meta = json.loads((session.path / "meta.json").read_text())
    assert not {"name", "extras", "control_space"} & set(meta)
    with open_session_store(session.path) as store:
        assert (store.name, store.extras, store.control_space) == (None, {}, None)


def test_name_and_extras_can_change_until_packed(tmp_path):
    session = Session(tmp_path, name="first")
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 100))
    session.close()
    session.name = "second try"
    session.extras["note"] = "electrode 3 loose"
    zip_path = session.pack_to_zip()
    assert zip_path.name.endswith("_second-try.session.zip")
    with open_session_store(zip_path) as store:
        assert store.name == "second try"
        assert store.extras == {"note": "electrode 3 loose"}
    with pytest.raises(SessionError, match="packed; its name cannot change"):
        session.name = "third"


def test_name_and_facts_changed_while_recording_reach_meta_json_within_seconds(tmp_path):
    session = Session(tmp_path)
    session.init_stream("emg", StreamInfo(3, 1000.0))

    def meta():
        return json.loads((session.path / "meta.json").read_text())

    session.name = "renamed"
    session.extras["mvc"] = 410.0  # a change of an entry, not an assignment
    assert wait_until(lambda: meta().get("name") == "renamed", timeout=10)
    assert wait_until(lambda: meta().get("extras") == {"mvc": 410.0}, timeout=10)
    session.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extras": {"force": {"at": object()}}}, r"extras\.force\.at must be JSON"),
        ({"extras": {"cal": [1.0, float("nan")]}}, r"extras\.cal\[1\] must be a finite number"),
        ({"extras": {"big": np.zeros(300_000)}}, r"more than the \d+ allowed in meta\.json"),
        ({"extras": {3: "x"}}, r"extras must have text keys, got the key 3"),
        ({"extras": ["not", "a", "dict"]}, r"extras must be a dict of JSON facts"),
        ({"name": "two\nlines"}, r"session name must be None or text .* without control"),
        ({"name": 7}, r"session name must be None or text"),
    ],
)
def test_names_and_facts_that_cannot_be_saved_are_refused_before_anything_is_written(
    tmp_path, kwargs, message
):
    with pytest.raises(SessionError, match=message):
        Session(tmp_path / "base", **kwargs)
    assert not (tmp_path / "base").exists()


def test_save_meta_refuses_a_control_space_that_is_not_json_and_changes_nothing(tmp_path):
    session = Session(tmp_path, app_name="before")
    session.save_meta(control_space="joint")
    before = (session.path / "meta.json").read_bytes()
    with pytest.raises(SessionError, match=r"control_space\[0\] must be JSON"):
        session.save_meta("after", control_space=[{1, 2}])
    assert (session.path / "meta.json").read_bytes() == before
    assert (session.app_name, session.control_space) == ("before", "joint")
    session.close()


def test_a_fact_broken_after_the_start_is_named_at_close_and_the_last_valid_ones_kept(tmp_path):
    session = Session(tmp_path, extras={"subject": "S01"})
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 100))
    session.extras["when"] = {1, 2}  # a set: not JSON
    with pytest.raises(SessionError, match=r"extras\.when must be JSON.*last valid ones"):
        session.close()
    meta = json.loads((session.path / "meta.json").read_text())
    assert meta["extras"] == {"subject": "S01"}
    assert meta["integrity"]["emg"]["n_samples"] == 100  # everything else was saved

    session.extras["when"] = "2026-05-17"
    session.close()  # retries what lagged behind
    meta = json.loads((session.path / "meta.json").read_text())
    assert meta["extras"] == {"subject": "S01", "when": "2026-05-17"}


def test_attach_takes_over_the_name_and_facts(tmp_path):
    session = Session(tmp_path, name="Grip force", extras={"mvc_newton": 412.5})
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 100))
    session.save_meta(control_space=["grip"])
    session.close()

    resumed = Session.attach(session.path)
    assert resumed.name == "Grip force"
    assert resumed.extras == {"mvc_newton": 412.5}
    assert resumed.control_space == ["grip"]
    zip_path = resumed.pack_to_zip()
    assert zip_path.name == f"{session.path.name}_grip-force.session.zip"
    with open_session_store(zip_path) as store:
        assert (store.name, store.extras, store.control_space) == (
            "Grip force",
            {"mvc_newton": 412.5},
            ["grip"],
        )


def test_a_myogestic_folder_with_a_name_packs_under_its_slug(tmp_path, myogestic_dir):
    folder = tmp_path / "2026-11-22_19-21-01"  # MyoGestic's folder name
    shutil.copytree(myogestic_dir / "folder", folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(name="Fixture run", extras={"force_calibration": {"gain": 2.0}})
    (folder / "meta.json").write_text(json.dumps(meta))

    zip_path = Session.attach(folder).pack_to_zip()
    assert zip_path.name == "2026-11-22_19-21-01_fixture-run.session.zip"
    zipped, _, arrays = read_like_myogestic(zip_path)
    assert zipped["pose_convention"] == "standard"  # MyoGestic's own keys are kept
    assert zipped["extras"] == {"force_calibration": {"gain": 2.0}}
    assert arrays["emg"][0].shape == (20000, 8)


# -- interrupted removals of named sessions ----------------------------------------------------
def test_an_interrupted_removal_of_a_named_session_is_finished_by_the_next_attach(tmp_path):
    session = Session(tmp_path, name="named")
    session.init_stream("emg", StreamInfo(3, 1000.0))
    session.append("emg", *ramp(0, 100))
    session.close()
    folder = session.path
    shutil.copytree(folder, tmp_path / "copy")
    zip_path = session.pack_to_zip()
    leftover = tmp_path / f".{folder.name}.removing"
    (tmp_path / "copy").rename(leftover)  # what a kill while deleting the folder leaves
    shutil.rmtree(leftover / "emg.zarr")

    with pytest.raises(SessionError, match=f"packed already: {zip_path.name}"):
        Session.attach(folder)
    assert not leftover.exists()
    with open_session_store(zip_path) as store:
        assert store.n_samples("emg") == 100


def test_a_leftover_is_kept_when_only_a_look_alike_zip_of_another_session_is_beside_it(tmp_path):
    folders = []
    for start in (0, 500):
        session = Session(tmp_path)
        session.init_stream("emg", StreamInfo(3, 1000.0))
        session.append("emg", *ramp(start, 100))
        session.close()
        folders.append(session.path)
    run = folders[0].rename(tmp_path / "run")
    other = folders[1].rename(tmp_path / "run_2")
    Session.attach(other).pack_to_zip()  # run_2.session.zip: named like a pack of "run"
    leftover = run.rename(tmp_path / ".run.removing")

    with pytest.raises(SessionError):
        Session.attach(tmp_path / "run")
    assert (leftover / "emg.zarr").is_dir()  # not run's zip: the only copy of run is kept

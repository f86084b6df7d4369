"""Stages 1-3 on a synthetic session with known offsets: outputs, accuracy, masks, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from labsession.errors import MotionSessionError
from labsession.motion import open_video
from labsession.motion.session import (
    backward_valid_mask,
    imregister_binary,
    recording_dir,
    run_session,
    run_stage1,
    run_stage2,
    run_stage3,
    session_state,
    temporal_valid_mask,
)

from .conftest import N_FRAMES, OFFSETS, SHAPE, fast_config

CENTER = 1


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


def test_stage1_writes_complete_outputs(finished_session) -> None:
    config, _ = finished_session
    for path in sorted(config.root.glob("*.tif")):
        folder = recording_dir(config, path)
        with h5py.File(folder / "compensated.hdf5", "r") as f:
            assert f["mov"].shape == (N_FRAMES, *SHAPE, 1)
        with h5py.File(folder / "idx.hdf", "r") as f:
            assert f["valid"].shape == (N_FRAMES, *SHAPE, 1)
        average = np.load(folder / "temporal_average.npy")
        assert average.shape == (*SHAPE, 1)
        with open_video(folder / "compensated.hdf5") as reader:
            np.testing.assert_allclose(average, reader[:].mean(axis=0), rtol=1e-5, atol=1e-6)
        status = _status(folder)
        assert status["stage1"] == "done"
        assert status["n_frames"] == N_FRAMES
        log = (folder / "session.log").read_text()
        assert f"stage 1 of {path.name} done" in log
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_stage2_recovers_the_offsets_between_recordings(finished_session) -> None:
    config, _ = finished_session
    for idx, path in enumerate(sorted(config.root.glob("*.tif"))):
        with np.load(recording_dir(config, path) / "w_to_reference.npz") as data:
            u, v = data["u"], data["v"]
        assert u.shape == v.shape == SHAPE
        truth = np.subtract(OFFSETS[idx], OFFSETS[CENTER])
        if idx == CENTER:
            assert not u.any()
            assert not v.any()
            continue
        inner = (slice(6, -6), slice(6, -6))
        recovered = np.array([np.median(u[inner]), np.median(v[inner])])
        assert np.abs(recovered - truth).max() < 0.2, (path.name, recovered, truth)
        epe = np.hypot(u[inner] - truth[0], v[inner] - truth[1]).mean()
        assert epe < 0.3


def test_stage2_returns_what_it_saved(finished_copy) -> None:
    middle_idx, center, displacements = run_stage2(finished_copy, progress=False)
    assert middle_idx == CENTER
    assert center.name == "rec_1.tif"
    assert len(displacements) == 3
    with np.load(
        recording_dir(finished_copy, center.with_name("rec_2.tif")) / "w_to_reference.npz"
    ) as d:
        np.testing.assert_array_equal(displacements[2][..., 0], d["u"])


def test_stage3_masks_are_correct(finished_session) -> None:
    config, final = finished_session
    files = sorted(config.root.glob("*.tif"))
    with np.load(config.final_dir / "final_valid_idx.npz") as data:
        np.testing.assert_array_equal(data["final_valid"], final)
        per_seq = data["per_seq_valid_masks"]
        aligned = data["aligned_valid_masks"]
        u_all, v_all = data["displacement_fields_u"], data["displacement_fields_v"]
        assert int(data["middle_idx"]) == CENTER
        assert data["temporal_averages"].shape == (3, *SHAPE, 1)
        assert list(data["compensated_h5_paths"]) == [
            str(recording_dir(config, p) / "compensated.hdf5") for p in files
        ]
    for idx, path in enumerate(files):
        temporal = temporal_valid_mask(recording_dir(config, path) / "idx.hdf")
        np.testing.assert_array_equal(per_seq[idx], temporal)
        expected = imregister_binary(temporal, u_all[idx], v_all[idx])
        np.testing.assert_array_equal(aligned[idx], expected)
        assert not (aligned[idx] & ~backward_valid_mask(u_all[idx], v_all[idx])).any()
    np.testing.assert_array_equal(final, aligned.all(axis=0))
    # The geometry of the known offsets: rec_2 samples 2.25 px to the right and 1.75 px up,
    # rec_0 1.5 px to the left and 1 px down, so those borders cannot be valid.
    assert not final[:, -2:].any()  # x + 2.25 > 47
    assert not final[:, :1].any()  # x - 1.5 < 0
    assert not final[:1, :].any()  # y - 1.75 < 0
    assert not final[-1:, :].any()  # y + 1 > 47
    assert final[8:-8, 8:-8].all()  # the middle is valid in every frame of every recording
    png = np.asarray(Image.open(config.final_dir / "final_valid_idx.png"))
    np.testing.assert_array_equal(png > 0, final)
    mat = scipy.io.loadmat(config.final_dir / "final_valid_idx.mat")
    np.testing.assert_array_equal(mat["final_valid"].astype(bool), final)
    assert int(mat["middle_idx"].squeeze()) == CENTER + 1  # MATLAB is 1-based
    assert _status(config.final_dir)["stage3"] == "done"
    assert (config.final_dir / "session_qc.png").stat().st_size > 10_000


def test_stage3_reprojects_every_recording_onto_the_reference(finished_session) -> None:
    config, final = finished_session
    reference = np.load(recording_dir(config, config.root / "rec_1.tif") / "temporal_average.npy")
    inner = final.copy()

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a[inner].ravel(), b[inner].ravel())[0, 1])

    for idx in (0, 2):
        name = f"rec_{idx}"
        with open_video(config.final_dir / f"aligned_{name}.tif") as reader:
            aligned = reader[:]
        assert aligned.shape == (N_FRAMES, *SHAPE, 1)
        before = np.load(
            recording_dir(config, config.root / f"{name}.tif") / "temporal_average.npy"
        )
        after = aligned.mean(axis=0)
        assert corr(after[..., 0], reference[..., 0]) > 0.97
        assert (
            corr(after[..., 0], reference[..., 0]) > corr(before[..., 0], reference[..., 0]) + 0.05
        )


def test_status_table_reports_everything_done(finished_session) -> None:
    config, final = finished_session
    state = session_state(config)
    assert [r["recording"] for r in state["recordings"]] == ["rec_0.tif", "rec_1.tif", "rec_2.tif"]
    assert all(
        (r["stage1"], r["stage2"], r["stage3"]) == ("done", "done", "done")
        for r in state["recordings"]
    )
    assert state["recordings"][CENTER]["center"] is True
    assert state["session"] == {"stage3": "done", "valid_pixels": int(final.sum())}


def test_status_verifies_the_final_mask_files(finished_copy) -> None:
    """`motion status` said the final mask was done from its status.json alone."""
    config = finished_copy
    assert session_state(config)["session"]["stage3"] == "done"
    npz = config.final_dir / "final_valid_idx.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    assert session_state(config)["session"]["stage3"].startswith(
        "pending: final_valid_idx.npz missing or unreadable"
    )
    for path in config.final_dir.glob("final_valid_idx.*"):
        path.unlink()
    state = session_state(config)["session"]
    assert state["stage3"].startswith("pending: final_valid_idx.npz missing")
    assert "valid_pixels" not in state
    run_stage3(config, progress=False)  # the files are made again
    assert session_state(config)["session"]["stage3"] == "done"
    (config.final_dir / "final_valid_idx.png").write_bytes(b"")
    assert session_state(config)["session"]["stage3"].startswith(
        "pending: final_valid_idx.png missing or unreadable"
    )
    run_stage3(config, progress=False)
    mat = config.final_dir / "final_valid_idx.mat"
    whole = mat.read_bytes()
    # Half a .mat still listed its variables (done); an empty one crashed status.
    for damaged in (whole[: len(whole) // 2], b""):
        mat.write_bytes(damaged)
        assert session_state(config)["session"]["stage3"].startswith(
            "pending: final_valid_idx.mat missing or unreadable"
        ), len(damaged)


def test_status_says_a_final_mask_of_earlier_results_is_pending(finished_copy) -> None:
    """Stage 1 or 2 redone since stage 3 ran: the final mask on disk is of the old results."""
    config = finished_copy
    path = config.root / "rec_0.tif"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert session_state(config)["session"] == {
        "stage3": "pending: stage 3 of rec_0.tif is not done for the current results"
    }
    run_stage1(config, progress=False)
    run_stage2(config, progress=False)
    assert session_state(config)["session"]["stage3"].startswith("pending: stage 3 of rec_0.tif")
    run_stage3(config, progress=False)
    assert session_state(config)["session"]["stage3"] == "done"
    final = _status(config.final_dir)
    final["inputs"][0]["w"] = "0" * 40  # a final mask made from another displacement
    (config.final_dir / "status.json").write_text(json.dumps(final))
    assert session_state(config)["session"]["stage3"] == (
        "pending: made from other stage-1 or stage-2 results than the current ones"
    )


def test_resume_skips_verified_work(finished_copy) -> None:
    config = finished_copy
    folders = [recording_dir(config, p) for p in sorted(config.root.glob("*.tif"))]
    runs = [_status(f)["stage1_run"] for f in folders]
    stamps = [(f / "compensated.hdf5").stat().st_mtime_ns for f in folders]
    aligned = sorted(config.final_dir.glob("aligned_*.tif"))
    aligned_stamps = [p.stat().st_mtime_ns for p in aligned]
    run_stage1(config, progress=False)
    run_stage2(config, progress=False)
    run_stage3(config, progress=False)
    assert [_status(f)["stage1_run"] for f in folders] == runs
    assert [(f / "compensated.hdf5").stat().st_mtime_ns for f in folders] == stamps
    assert len(aligned) == 3
    assert [p.stat().st_mtime_ns for p in aligned] == aligned_stamps
    assert "is already complete; skipped" in (folders[0] / "session.log").read_text()


def test_resume_redoes_a_truncated_output_and_what_depends_on_it(finished_copy) -> None:
    config = finished_copy
    folders = [recording_dir(config, p) for p in sorted(config.root.glob("*.tif"))]
    runs = [_status(f)["stage1_run"] for f in folders]
    target = folders[2] / "compensated.hdf5"
    with h5py.File(target, "r") as f:
        good = f["mov"][:]
    with h5py.File(target, "w") as f:  # a file that looks fine but misses frames
        f["mov"] = good[:10]
    state = session_state(config)
    assert state["recordings"][2]["stage1"].startswith("incomplete: compensated.hdf5 has 10")
    run_stage1(config, progress=False)
    new_runs = [_status(f)["stage1_run"] for f in folders]
    assert new_runs[:2] == runs[:2]
    assert new_runs[2] != runs[2]
    with h5py.File(target, "r") as f:
        np.testing.assert_array_equal(f["mov"][:], good)
    assert _status(folders[2])["stage2"] is None  # stale until stage 2 reruns
    run_stage2(config, progress=False)
    run_stage3(config, progress=False)
    assert session_state(config)["recordings"][2]["stage3"] == "done"


def test_resume_redoes_a_changed_input(finished_copy) -> None:
    config = finished_copy
    path = config.root / "rec_0.tif"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert session_state(config)["recordings"][0]["stage1"] == (
        "incomplete: the input file changed since stage 1 ran"
    )
    before = _status(recording_dir(config, path))["stage1_run"]
    run_stage1(config, progress=False)
    assert _status(recording_dir(config, path))["stage1_run"] != before


def test_resume_redoes_stage1_when_its_options_changed(finished_copy) -> None:
    """Rerun with other flow options: the results made with the old ones are not kept."""
    config = finished_copy
    folders = [recording_dir(config, p) for p in sorted(config.root.glob("*.tif"))]
    runs = [_status(f)["stage1_run"] for f in folders]
    assert _status(folders[0])["stage1_options"]["alpha"] == [1.5, 1.5]  # the default
    changed = fast_config(config.root, flow_options={**config.flow_options, "alpha": 4.0})
    state = session_state(changed)
    assert [r["stage1"] for r in state["recordings"]] == [
        "incomplete: the stage-1 options changed since it ran: alpha"
    ] * 3
    run_session(changed, progress=False)
    assert all(_status(f)["stage1_run"] != run for f, run in zip(folders, runs, strict=True))
    assert all(_status(f)["stage1_options"]["alpha"] == [4.0, 4.0] for f in folders)
    log = (folders[0] / "session.log").read_text()
    assert "(re)starts: the stage-1 options changed since it ran: alpha" in log
    state = session_state(changed)
    assert all(r["stage3"] == "done" for r in state["recordings"])
    assert state["session"]["stage3"] == "done"
    # the earlier options again: redone again, not taken for the results of the new ones
    assert session_state(config)["recordings"][0]["stage1"].startswith("incomplete:")


def test_a_backend_given_by_of_params_redoes_stage1(finished_copy, caplog) -> None:
    """--of-params flow_backend=... lost to the session's flow_backend: nothing was redone."""
    config = finished_copy  # flow_backend = "diso" in the session config
    assert session_state(config)["recordings"][0]["stage1"] == "done"
    changed = config.with_flow_overrides({"flow_backend": "flowreg"})  # what --of-params builds
    assert [r["stage1"] for r in session_state(changed)["recordings"]] == [
        "incomplete: the stage-1 options changed since it ran: flow_backend"
    ] * 3
    quality = config.with_flow_overrides({"quality_setting": "balanced"})  # session: "fast"
    assert session_state(quality)["recordings"][0]["stage1"] == (
        "incomplete: the stage-1 options changed since it ran: quality_setting"
    )
    # the same value as the session's: still done
    same = config.with_flow_overrides({"flow_backend": "diso"})
    assert session_state(same)["recordings"][0]["stage1"] == "done"
    with caplog.at_level("WARNING"):
        run_stage1(config, {"flow_backend": "diso", "quality_setting": "fast"}, progress=False)
    assert not [r for r in caplog.records if "overrides" in r.getMessage()]


def test_resume_keeps_a_stage1_done_before_options_were_recorded(finished_copy) -> None:
    """A status.json of an earlier labsession has no options: its results are kept."""
    config = finished_copy
    folder = recording_dir(config, config.root / "rec_0.tif")
    status = _status(folder)
    del status["stage1_options"]
    (folder / "status.json").write_text(json.dumps(status))
    assert session_state(config)["recordings"][0]["stage1"] == "done"
    run_stage1(config, progress=False)
    assert _status(folder)["stage1_run"] == status["stage1_run"]


def test_resume_false_redoes_everything(finished_copy) -> None:
    config = finished_copy.model_copy(update={"resume": False})
    folder = recording_dir(config, config.root / "rec_1.tif")
    before = _status(folder)["stage1_run"]
    run_stage1(config, progress=False)
    assert _status(folder)["stage1_run"] != before


def test_later_stages_explain_what_is_missing(fresh_copy: Path) -> None:
    config = fast_config(fresh_copy)
    with pytest.raises(MotionSessionError, match=r"stage 1 is not done for \['rec_0.tif'"):
        run_stage2(config, progress=False)
    with pytest.raises(MotionSessionError, match="run stage 1 first"):
        run_stage3(config, progress=False)


def test_a_failing_recording_is_named_and_the_others_finish(fresh_copy: Path) -> None:
    (fresh_copy / "rec_9.tif").write_bytes(b"not a tiff")
    config = fast_config(fresh_copy)
    with pytest.raises(
        MotionSessionError, match=r"stage 1 failed for 1 of 4 recording\(s\): rec_9"
    ):
        run_stage1(config, progress=False)
    assert _status(recording_dir(config, fresh_copy / "rec_2.tif"))["stage1"] == "done"


@pytest.mark.slow
def test_local_process_pool_matches_in_process(fresh_copy: Path, finished_session) -> None:
    reference_config, _ = finished_session
    config = fast_config(fresh_copy, n_workers=2)
    run_stage1(config, progress=False)
    for path in sorted(fresh_copy.glob("*.tif")):
        with h5py.File(recording_dir(config, path) / "compensated.hdf5", "r") as a:
            ref_file = recording_dir(reference_config, reference_config.root / path.name)
            with h5py.File(ref_file / "compensated.hdf5", "r") as b:
                np.testing.assert_array_equal(a["mov"][:], b["mov"][:])
        assert "SpawnProcess" in (recording_dir(config, path) / "session.log").read_text()

import json
import subprocess
import sys

from typer.testing import CliRunner

from labsession.cli import app

runner = CliRunner()


def test_version_matches_package():
    from labsession import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"labsession {__version__}"


def test_python_dash_m_labsession_is_the_command_line():
    from labsession import __version__

    argv = [sys.executable, "-m", "labsession", "--version"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"labsession {__version__}"


def test_info_json_on_myogestic_zip(myogestic_zip):
    result = runner.invoke(app, ["info", str(myogestic_zip), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["packed"] is True
    assert summary["streams"]["emg"]["n_samples"] == 20000
    assert summary["streams"]["emg"]["duration_s"] == 20.0
    assert summary["streams"]["glove"]["n_channels"] == 3
    assert summary["labels"] == {"Rest": 5, "Fist": 2, "Open": 2}
    assert summary["size_bytes"] == myogestic_zip.stat().st_size


def test_info_table_lists_streams_and_classes(myogestic_zip):
    result = runner.invoke(app, ["info", str(myogestic_zip)], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    for text in ("emg", "glove", "1000", "20000", "Rest", "Fist", "packed"):
        assert text in result.stdout


def test_info_on_bad_path_exits_2_with_message(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such session" in result.output


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "labsession.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("labsession ")


# -- integrity -------------------------------------------------------------------------------------
def _session_with_a_gap(tmp_path):
    """A real session of 2 s at 1 kHz with 0.5 s missing after 1 s; returns its folder."""
    import numpy as np

    from labsession.recording import Session, StreamInfo

    ts = 500.0 + np.r_[np.arange(1000), np.arange(1500, 2500)] / 1000.0
    with Session(tmp_path) as session:
        session.init_stream("emg", StreamInfo(2, 1000.0))
        session.append("emg", np.zeros((ts.size, 2), np.float32), ts)
        session.save_meta("gap-test", ["Rest"])
        folder = session.path
    return folder, ts


def _edit_meta(folder, edit):
    meta_file = folder / "meta.json"
    meta = json.loads(meta_file.read_text())
    edit(meta)
    meta_file.write_text(json.dumps(meta))


def test_info_prints_the_recorded_integrity(tmp_path):
    import numpy as np

    from labsession.recording._integrity import IntegrityTracker

    folder, ts = _session_with_a_gap(tmp_path)
    tracker = IntegrityTracker(1000.0)
    tracker.on_chunk(ts[:600])
    tracker.on_chunk(ts[600:1000] - 0.0021)  # stamped 2.1 ms early: 1.1 ms back
    tracker.on_chunk(ts[1000:] - 0.0021)
    tracker.on_disconnect(501.2)
    tracker.on_reconnect(501.4)
    tracker.on_source_error(501.3, "OSError: [Errno 19] No such device")
    record = tracker.snapshot()
    _edit_meta(folder, lambda meta: meta.update(integrity={"emg": record.to_meta()}))

    result = runner.invoke(app, ["info", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "emg: integrity" in out
    assert "computed from the stored timestamps" not in out
    assert "2,000 at" in out
    assert f"{record.effective_fs:.6g} Hz effective vs 1000 Hz nominal" in out
    # 0.5 s missing, seen from a stamp 2.1 ms early: 501 ms, 500 samples.
    assert "gaps            1, 501 ms in all, about 500 samples missing: [t=0.997, t=1.498]" in out
    assert (
        "backward steps  1 (largest 1.1 ms); 2 stored stamps moved forward by at most 1.1 ms" in out
    )
    assert "disconnects     1: t=1.200 to t=1.400" in out
    assert "source errors   1, last at t=1.300: OSError: [Errno 19] No such device" in out
    assert np.all(np.diff(ts) > 0)  # the session itself was written in order

    as_json = json.loads(runner.invoke(app, ["info", str(folder), "--json"]).stdout)
    assert as_json["integrity"]["emg"]["recorded"] is True
    assert as_json["integrity"]["emg"]["gaps"] == [list(g) for g in record.gaps]


def test_info_computes_integrity_for_sessions_without_a_record(tmp_path):
    folder, _ = _session_with_a_gap(tmp_path)
    _edit_meta(folder, lambda meta: (meta.pop("integrity", None), meta.pop("writer", None)))
    result = runner.invoke(app, ["info", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "no record in meta.json, written by MyoGestic or an older labsession" in out
    assert "gaps            1, 501 ms in all, about 500 samples missing: [t=0.999, t=1.500]" in out
    assert "backward steps  none" in out
    assert "disconnects     unknown (not in the timestamps)" in out
    as_json = json.loads(runner.invoke(app, ["info", str(folder), "--json"]).stdout)
    assert as_json["integrity"]["emg"]["recorded"] is False
    assert as_json["integrity"]["emg"]["dropped_samples"] == 500


def test_info_on_a_malformed_integrity_record_exits_2_naming_stream_and_key(tmp_path):
    folder, _ = _session_with_a_gap(tmp_path)
    _edit_meta(folder, lambda meta: meta.update(integrity={"emg": {"n_samples": -3}}))
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 2
    assert "meta.json integrity['emg']" in result.output
    assert "'n_samples' must be a count" in result.output


def test_info_on_myogestic_zip_computes_integrity(myogestic_zip):
    result = runner.invoke(app, ["info", str(myogestic_zip)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "20,000 at 1000 Hz effective vs 1000 Hz nominal (+0.00 %)" in result.stdout
    assert "2,000 at 100 Hz effective vs 100 Hz nominal (+0.00 %)" in result.stdout
    assert result.stdout.count("computed from the stored timestamps") == 2

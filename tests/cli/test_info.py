import json
import subprocess
import sys

import pytest
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
    assert f"{myogestic_zip.stat().st_size / 1024:.1f} KiB" in result.stdout  # binary units


def test_info_on_bad_path_exits_1_with_one_line(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert result.exit_code == 1  # a runtime failure (a mistake in the options would be 2)
    assert result.output.startswith("error: ")
    assert "no such session" in result.output
    assert len(result.output.splitlines()) == 1


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


def test_info_on_a_malformed_integrity_record_exits_1_naming_stream_and_key(tmp_path):
    folder, _ = _session_with_a_gap(tmp_path)
    _edit_meta(folder, lambda meta: meta.update(integrity={"emg": {"n_samples": -3}}))
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 1  # a runtime failure: the file, not the options, is wrong
    assert len(result.output.splitlines()) == 1
    assert "meta.json integrity['emg']" in result.output
    assert "'n_samples' must be a count" in result.output


def test_info_on_myogestic_zip_computes_integrity(myogestic_zip):
    result = runner.invoke(app, ["info", str(myogestic_zip)], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "20,000 at 1000 Hz effective vs 1000 Hz nominal (+0.00 %)" in result.stdout
    assert "2,000 at 100 Hz effective vs 100 Hz nominal (+0.00 %)" in result.stdout
    assert result.stdout.count("computed from the stored timestamps") == 2


# -- a folder of sessions --------------------------------------------------------------------------
def _folder_of_sessions(tmp_path):
    from labsession.testing import record_tiny_session

    parent = tmp_path / "sessions"
    packed = record_tiny_session(parent, seed=1, pack=True)
    folder = record_tiny_session(parent, seed=2, pack=False)
    (parent / ".tmp-write").write_bytes(b"partial")  # hidden: an atomic write in progress
    (parent / "notes.txt").write_text("not a session")
    return parent, sorted([packed, folder], key=lambda p: p.name)


def test_info_on_a_folder_lists_its_sessions_one_line_each(tmp_path):
    from labsession.core.units import format_bytes
    from labsession.recording import session_summary

    from .conftest import run_cli, tree

    parent, sessions = _folder_of_sessions(tmp_path)
    before = tree(tmp_path)
    result = run_cli(tmp_path, "info", str(parent))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert lines[0].startswith(f"{parent}: 2 sessions, ")
    for line, session in zip(lines[1:], sessions, strict=True):  # sorted by name
        size = format_bytes(session_summary(session)["size_bytes"])
        expected = f"{session.name} 1 s emg (2 ch, 100 Hz) 5 labels {size}"
        assert line.split() == expected.split()
    assert tree(tmp_path) == before  # nothing written

    as_json = json.loads(run_cli(tmp_path, "info", str(parent), "--json").stdout)
    assert [s["path"] for s in as_json] == [str(s) for s in sessions]
    assert all(s["n_labels"] == 5 for s in as_json)


def test_info_on_a_folder_with_a_broken_session_still_lists_the_others(tmp_path):
    from .conftest import run_cli

    parent, sessions = _folder_of_sessions(tmp_path)
    broken = parent / "0000-broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{not json")
    result = run_cli(tmp_path, "info", str(parent))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{parent}: 3 sessions")
    assert lines[1].split()[:3] == ["0000-broken", "cannot", "be"]
    assert "meta.json" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == [s.name for s in sessions]


@pytest.mark.parametrize("content", ["empty", "unrecognisable"])
def test_info_on_a_folder_without_sessions_says_so_in_one_line(tmp_path, content):
    from .conftest import run_cli

    parent = tmp_path / "nothing"
    parent.mkdir()
    if content == "unrecognisable":
        (parent / "data.csv").write_text("1,2\n")
        (parent / "results").mkdir()
    result = run_cli(tmp_path, "info", str(parent))
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: no sessions in {parent}")


def test_info_shows_a_sessions_name_as_written(tmp_path):
    import numpy as np

    from labsession.recording import Session, StreamInfo

    with Session(tmp_path, name="[pilot] 3") as session:  # brackets: not rich markup
        session.init_stream("emg", StreamInfo(2, 100.0))
        session.append("emg", np.zeros((10, 2), np.float32), np.arange(10) / 100)
    zip_path = session.pack_to_zip()
    result = CliRunner().invoke(app, ["info", str(zip_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "name '[pilot] 3', app" in result.output
    summary = json.loads(CliRunner().invoke(app, ["info", str(zip_path), "--json"]).output)
    assert summary["name"] == "[pilot] 3"


def test_info_shows_class_names_and_created_as_written_never_as_markup(tmp_path):
    import numpy as np

    from labsession.recording import Session, StreamInfo

    names = ["Pinch [thumb]", "[/]", "Fist [bold]big[/bold]"]
    with Session(tmp_path, class_names=names) as session:
        session.init_stream("emg", StreamInfo(2, 100.0))
        for i in range(3):
            session.add_label(i, timestamp=i * 0.3)
        session.append("emg", np.zeros((100, 2), np.float32), np.arange(100) / 100)
    meta_file = session.path / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["created"] = "[/][red]2026"  # a hand-edited file: any string is read
    meta_file.write_text(json.dumps(meta))
    result = CliRunner().invoke(app, ["info", str(session.path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in names:
        assert name in result.output
    assert "created [/][red]2026" in result.output


def test_info_on_a_folder_whose_record_is_older_than_its_samples_computes_it(tmp_path):
    """A recording killed before it closed: meta.json's record was saved a while before the last
    samples (at creation, 0 samples). info used to print that stale record ("0 at 0 Hz
    effective") under a table of 2,000 samples; it computes the record from the timestamps, says
    why, and keeps the disconnects and source errors as last saved."""
    from labsession.recording._integrity import IntegrityTracker

    folder, ts = _session_with_a_gap(tmp_path)
    tracker = IntegrityTracker(1000.0)
    tracker.on_chunk(ts[:600])
    tracker.on_disconnect(500.3)
    tracker.on_reconnect(500.4)
    record = tracker.snapshot()
    _edit_meta(folder, lambda meta: meta.update(integrity={"emg": record.to_meta()}))

    result = runner.invoke(app, ["info", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "the record in meta.json covers 600 of the 2,000 samples stored" in out
    assert "samples         2,000 at" in out
    assert "gaps            1, 501 ms in all, about 500 samples missing" in out
    assert "disconnects     1: t=0.300 to t=0.400" in out
    as_json = json.loads(runner.invoke(app, ["info", str(folder), "--json"]).stdout)
    assert as_json["integrity"]["emg"]["recorded"] is False
    assert as_json["integrity"]["emg"]["n_samples"] == 2000
    assert "covers 600 of the 2,000" in as_json["integrity"]["emg"]["note"]


# -- --verify --------------------------------------------------------------------------------------
def _flip_a_sample_byte(zip_path):
    """Flip one byte inside the stored bytes of the first sample chunk of ``zip_path``."""
    import struct
    import zipfile

    with zipfile.ZipFile(zip_path) as archive:
        member = archive.getinfo("emg.zarr/c/0/0")
    with open(zip_path, "r+b") as f:
        f.seek(member.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        at = member.header_offset + 30 + name_len + extra_len + member.compress_size // 2
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0xFF]))


def test_info_verify_reads_every_chunk_and_fails_on_a_corrupt_one(tmp_path):
    """``labsession info`` reads a session's metadata, not its samples: on a copy with a flipped
    byte it printed a clean summary, exit 0, and nothing could check a copy short of plotting or
    training on it. ``--verify`` reads and checks every chunk; a corrupt one ends in one line
    naming it, exit 1; in a folder, every session is listed, then exit 1."""
    from labsession.testing import record_tiny_session

    from .conftest import run_cli

    parent = tmp_path / "sessions"
    good = record_tiny_session(parent, seed=1)
    bad = record_tiny_session(parent, seed=2)
    _flip_a_sample_byte(bad)

    ok = run_cli(tmp_path, "info", str(good), "--verify")
    assert ok.returncode == 0, ok.stderr
    assert (
        ok.stdout.splitlines()[-1] == "verified: every chunk read and checked (100 rows of samples)"
    )
    as_json = json.loads(run_cli(tmp_path, "info", str(good), "--verify", "--json").stdout)
    assert as_json["verified_rows"] == 100

    assert run_cli(tmp_path, "info", str(bad)).returncode == 0  # the metadata are intact
    failed = run_cli(tmp_path, "info", str(bad), "--verify")
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()
    assert line.startswith(f"error: {bad}: stream 'emg' cannot be read: chunk emg.zarr/c/0/0")

    folder = run_cli(tmp_path, "info", str(parent), "--verify")
    assert folder.returncode == 1, folder.stdout
    lines = folder.stdout.splitlines()
    assert any(bad.name in row and "cannot be read" in row for row in lines)
    assert lines[-1] == "verified: 1 read and checked, every chunk; 1 cannot be read"

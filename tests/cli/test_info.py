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

from __future__ import annotations

import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from labsession.runs import (
    SessionManager,
    archive_existing,
    generate_id,
    id_start_time,
    is_run_id,
    restore_existing,
)
from labsession.runs._ids import make_run_dir

SCITEX_FORM = re.compile(r"^\d{4}Y-\d{2}M-\d{2}D-\d{2}h\d{2}m\d{2}s_[A-Za-z0-9]{4}$")


def test_id_has_the_established_form():
    rid = generate_id(now=dt.datetime(2026, 5, 17, 14, 23, 5))
    assert SCITEX_FORM.match(rid), rid
    assert rid.startswith("2026Y-05M-17D-14h23m05s_")


def test_ids_sort_by_start_time():
    times = [
        dt.datetime(2026, 1, 1) + dt.timedelta(seconds=s) for s in (0, 1, 59, 3600, 86400 * 40)
    ]
    ids = [generate_id(now=t) for t in times]
    assert sorted(ids) == ids
    assert [id_start_time(i) for i in ids] == times


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("2025Y-11M-12D-09h57m48s_NLRB", True),  # written by scitex-session
        ("2025Y-11M-12D-09h57m48s_NLRB-main", True),  # with an sdir_suffix
        ("2025Y-11M-12D-09h57m48s_a1B2c3D4", True),  # gen_ID(N=8)
        ("DEBUG_2025Y-11M-12D-09h57m48s_NLRB", True),  # scitex-session's debug mode
        ("DEBUG_2025Y-11M-12D-09h57m48s_NLRB-main", True),
        ("debug_2025Y-11M-12D-09h57m48s_NLRB", False),
        ("DEBUG_", False),
        ("DEBUG_DEBUG_2025Y-11M-12D-09h57m48s_NLRB", False),
        ("2025-11-12_09-57-48_3f9a0c1e", False),  # a recording session, not a run
        ("2025Y-11M-12D-09h57m48s_", False),
        ("../2025Y-11M-12D-09h57m48s_NLRB", False),
        ("notes.txt", False),
    ],
)
def test_is_run_id(name, expected):
    assert is_run_id(name) is expected


def test_id_start_time_rejects_other_names():
    with pytest.raises(ValueError, match="not a run ID"):
        id_start_time("results")


def test_concurrent_starts_get_distinct_folders(tmp_path):
    def make(_):
        return make_run_dir(tmp_path / "RUNNING")

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(make, range(400)))
    paths = {path for _rid, path in made}
    assert len(paths) == 400
    assert all(p.is_dir() and is_run_id(p.name) for p in paths)


def test_make_run_dir_appends_suffix(tmp_path):
    rid, path = make_run_dir(tmp_path, suffix="main")
    assert path.name == f"{rid}-main"
    assert is_run_id(path.name)


def _scitex_debug_run(folder, name="DEBUG_2026Y-12M-02D-14h27m17s_iORx"):
    """A run folder as scitex-session writes one in debug mode (``config/IS_DEBUG.yaml``)."""
    run = folder / name
    (run / "CONFIGS").mkdir(parents=True)
    (run / "logs").mkdir()
    (run / "CONFIGS" / "CONFIG.yaml").write_text(
        f"IS_DEBUG:\n    IS_DEBUG: true\nID: {name}\nEXIT_STATUS: 0\n"
    )
    (run / "CONFIGS" / "CONFIG.pkl").write_bytes(b"\x80\x04N.")
    (run / "logs" / "stdout.log").write_text("debug run\n")
    (run / "logs" / "stderr.log").write_text("")
    return run


def test_scitex_debug_runs_are_listed_archived_and_restored(tmp_path):
    """scitex-session names a debug run ``DEBUG_<ID>``: list, archive and restore find it."""
    done = tmp_path / "dbg_out" / "FINISHED_SUCCESS"
    run = _scitex_debug_run(done)
    _scitex_debug_run(done, "2026Y-12M-02D-14h27m10s_norm")
    assert id_start_time(run.name) == dt.datetime(2026, 12, 2, 14, 27, 17)
    records = SessionManager().list_sessions(tmp_path / "dbg_out")
    assert {sid: r.status for sid, r in records.items()} == {
        "2026Y-12M-02D-14h27m10s_norm": "success",
        run.name: "success",
    }
    assert records[run.name].start_time == dt.datetime(2026, 12, 2, 14, 27, 17)
    files = sorted(p.relative_to(run) for p in run.rglob("*"))
    archived = archive_existing(done, dry_run=False, jobs=1)
    assert (archived["candidates"], archived["archived"], archived["errors"]) == (2, 2, [])
    assert not run.exists()
    assert (done / f"{run.name}.tar.gz").is_file()
    records = SessionManager().list_sessions(tmp_path / "dbg_out")
    assert records[run.name].archived
    restored = restore_existing(done, dry_run=False, remove_archive=True, jobs=1)
    assert (restored["candidates"], restored["restored"], restored["errors"]) == (2, 2, [])
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == files
    assert (run / "logs" / "stdout.log").read_text() == "debug run\n"

from __future__ import annotations

import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from labsession.runs import generate_id, id_start_time, is_run_id
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

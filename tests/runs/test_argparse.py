from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

import pytest

from labsession.runs._argparse import build_parser, docstring_params


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def analyse(
    data: Path,
    n_trials: int = 10,
    threshold: float = 0.5,
    shuffle: bool = False,
    plot: bool = True,
    method: Literal["mean", "median"] = "mean",
    mode: Mode = Mode.FAST,
    channels: list[int] | None = None,
    CONFIG=None,  # injected by the session, not an option
) -> int:
    """Analyse one recording.

    Longer text that is not the summary.

    Parameters
    ----------
    data : Path
        The recording to read.
    n_trials
        Trials to simulate,
        across two lines.
    shuffle
        Shuffle the labels.

    Returns
    -------
    int
        Exit status.
    """
    return 0


def test_types_defaults_and_flags():
    parser = build_parser(analyse)
    ns = parser.parse_args(
        [
            "--data",
            "x.h5",
            "--n-trials",
            "3",
            "--shuffle",
            "--no-plot",
            "--method",
            "median",
            "--mode",
            "SLOW",
            "--channels",
            "1",
            "2",
        ]
    )
    assert ns.data == Path("x.h5")
    assert ns.n_trials == 3
    assert ns.threshold == 0.5
    assert ns.shuffle is True
    assert ns.plot is False
    assert ns.method == "median"
    assert ns.mode is Mode.SLOW
    assert ns.channels == [1, 2]
    assert not hasattr(ns, "CONFIG")


def test_required_and_choices_are_enforced(capsys):
    parser = build_parser(analyse)
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x", "--method", "mode"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "x", "--n-trials", "three"])


def test_help_comes_from_the_docstring():
    text = build_parser(analyse).format_help()
    assert "Analyse one recording." in text
    assert "Longer text" not in text
    assert "Trials to simulate, across two lines. (default: 10)" in " ".join(text.split())
    assert "--shuffle, --no-shuffle" in text


def test_docstring_params_stops_at_next_section():
    summary, params = docstring_params(analyse.__doc__)
    assert summary == "Analyse one recording."
    assert set(params) == {"data", "n_trials", "shuffle"}


def test_var_args_are_refused():
    def bad(*values: int) -> None:
        """Nothing."""

    with pytest.raises(TypeError, match="'values'"):
        build_parser(bad)

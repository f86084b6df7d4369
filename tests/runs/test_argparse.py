from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from labsession.runs._argparse import build_parser, docstring_params

from .conftest import run_script, write_script

if TYPE_CHECKING:  # never imported at run time: its annotations cannot be resolved then
    import pandas as pd


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


def fit(
    n_epochs: int = 3,
    verbose: bool = False,
    table: pd.DataFrame | None = None,
    rate: UnknownName = 0.5,  # noqa: F821 - a name that exists nowhere
) -> int:
    """Train."""
    return 0


def test_an_unresolvable_annotation_costs_only_its_own_parameter():
    """With string annotations, one that cannot be evaluated kept every other option a str."""
    parser = build_parser(fit)
    ns = parser.parse_args(["--n-epochs", "5", "--verbose", "--table", "t.csv", "--rate", "2"])
    assert (ns.n_epochs, ns.verbose, ns.table, ns.rate) == (5, True, "t.csv", 2.0)
    assert vars(parser.parse_args([])) == {
        "n_epochs": 3,
        "verbose": False,
        "table": None,
        "rate": 0.5,
    }


def test_a_script_with_type_checking_imports_gets_typed_options(tmp_path):
    script = write_script(
        tmp_path,
        "train.py",
        """
        from __future__ import annotations

        from typing import TYPE_CHECKING

        from labsession.runs import session

        if TYPE_CHECKING:
            import pandas as pd


        @session
        def main(n_epochs: int = 3, verbose: bool = False, table: pd.DataFrame | None = None):
            \"\"\"Train.\"\"\"
            print(repr(n_epochs), repr(verbose), repr(table))
            return 0


        if __name__ == "__main__":
            main()
        """,
    )
    result = run_script(script, "--n-epochs", "5", "--verbose")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "5 True None"


def detect(use_gpu: bool | None = None, cache: bool | None = True) -> int:
    """Use the GPU when asked; None = detect automatically."""
    return 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], None),
        (["--use-gpu"], True),
        (["--no-use-gpu"], False),
    ],
)
def test_an_optional_bool_stays_none_unless_given(argv, expected):
    ns = build_parser(detect).parse_args(argv)
    assert ns.use_gpu is expected
    assert ns.cache is True


def test_a_script_receives_none_for_an_optional_bool_not_given(tmp_path):
    script = write_script(
        tmp_path,
        "detect.py",
        """
        from labsession.runs import session


        @session
        def main(use_gpu: bool | None = None) -> int:
            \"\"\"Use the GPU when asked; None = detect automatically.\"\"\"
            print(repr(use_gpu))
            return 0


        if __name__ == "__main__":
            main()
        """,
    )
    for argv, shown in (([], "None"), (["--use-gpu"], "True"), (["--no-use-gpu"], "False")):
        result = run_script(script, *argv)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == shown

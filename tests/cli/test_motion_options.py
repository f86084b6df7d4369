"""``labsession motion compensate`` options as the motion pages name them."""

from __future__ import annotations

import pytest
import typer

from labsession.cli.motion import _check_backend


@pytest.mark.parametrize(
    ("given", "runs"),
    [("torch", "flowreg_torch"), ("Torch", "flowreg_torch"), ("flowreg_cuda", "flowreg_cuda")],
)
def test_backend_takes_the_names_the_options_take(given, runs):
    """docs/motion.md: "flowreg_torch (alias torch)", and OFOptions(flow_backend="torch") runs;
    ``--backend torch`` was refused ("'torch' is not one of 'diso', 'flowreg', ...")."""
    assert _check_backend(given) == runs


def test_an_unknown_backend_is_refused_naming_the_known_ones():
    with pytest.raises(typer.BadParameter, match="'gpu' is not one of 'diso', 'flowreg'"):
        _check_backend("gpu")

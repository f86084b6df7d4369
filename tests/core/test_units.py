"""Sizes in one unit system (binary) wherever labsession shows them."""

import pytest

from labsession.core.units import format_bytes


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1.0 MiB"),  # rounds up into the next unit, never "1024.0 KiB"
        (2_200_000, "2.1 MiB"),
        (5 * 1024**3, "5.0 GiB"),
        (3 * 1024**4, "3.0 TiB"),
        (2048 * 1024**4, "2048.0 TiB"),
    ],
)
def test_format_bytes(n, text):
    assert format_bytes(n) == text


def test_widgets_and_cli_use_the_same_formatter():
    from labsession.cli import demo, info
    from labsession.widgets import _recording_controls, _session_manager

    assert _recording_controls.format_bytes is format_bytes
    assert _session_manager.format_bytes is format_bytes
    assert info.format_bytes is format_bytes
    assert demo.format_bytes is format_bytes

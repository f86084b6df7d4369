"""The clock every recorded timestamp is on: the Lab Streaming Layer's ``local_clock``."""

from __future__ import annotations

__all__ = ["local_clock"]


def local_clock() -> float:
    """Seconds on the LSL clock (monotonic, shared by every LSL stream on this machine)."""
    from mne_lsl.lsl import local_clock as _lsl_clock

    return float(_lsl_clock())

"""Matplotlib set-up for a run: Agg when asked, figure sizes in millimetres, dpi, spines, colours.

``matplotlib.pyplot`` takes about half a second to import, more than everything else a run does at
start. When the script did not pass ``plt``, :func:`configure_matplotlib` returns a
:class:`LazyPyplot` that imports and styles pyplot on first use, so a script that never plots
never pays for it. The backend choice (``agg=True``) is applied at once, through ``MPLBACKEND``
if matplotlib is not imported yet.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["COLORS", "LazyPyplot", "PlotStyle", "configure_matplotlib"]

logger = logging.getLogger(__name__)

#: The run palette (colour-blind friendly, the order of the axes' colour cycle).
COLORS: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "red": "#D55E00",
    "purple": "#CC79A7",
    "lightblue": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#808080",
    "gray": "#808080",
    "navy": "#1F3A68",
    "brown": "#8C564B",
    "white": "#FFFFFF",
}
_CYCLE = ("blue", "orange", "green", "red", "purple", "lightblue", "yellow", "navy", "brown")
_NAMED_SIZES = ("xx-small", "x-small", "small", "medium", "large", "x-large", "xx-large")
_MM_PER_INCH = 25.4


@dataclass(frozen=True, kw_only=True)
class PlotStyle:
    """The matplotlib settings of a run (the plotting arguments of :func:`start`)."""

    fig_size_mm: tuple[float, float] = (160, 100)
    fig_scale: float = 1.0
    dpi_display: int = 100
    dpi_save: int = 300
    fontsize: str | float = "small"
    autolayout: bool = False
    hide_top_right_spines: bool = True
    alpha: float = 0.9
    line_width: float = 1.0

    def __post_init__(self) -> None:
        width, height = self.fig_size_mm
        if width <= 0 or height <= 0 or self.fig_scale <= 0:
            raise ValueError(
                f"fig_size_mm {self.fig_size_mm} and fig_scale {self.fig_scale} must be positive"
            )
        if isinstance(self.fontsize, str) and self.fontsize not in _NAMED_SIZES:
            raise ValueError(f"fontsize {self.fontsize!r} is not a number or one of {_NAMED_SIZES}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")

    def rc_params(self) -> dict[str, Any]:
        """Return the ``matplotlib.rcParams`` entries this style sets."""
        width, height = (v * self.fig_scale / _MM_PER_INCH for v in self.fig_size_mm)
        params: dict[str, Any] = {
            "figure.figsize": (width, height),
            "figure.dpi": self.dpi_display,
            "savefig.dpi": self.dpi_save,
            "figure.autolayout": self.autolayout,
            "lines.linewidth": self.line_width,
            "axes.linewidth": self.line_width * 0.8,
            "legend.framealpha": self.alpha,
            "patch.force_edgecolor": False,
            "axes.spines.top": not self.hide_top_right_spines,
            "axes.spines.right": not self.hide_top_right_spines,
        }
        if isinstance(self.fontsize, str):
            for key in (
                "axes.labelsize",
                "axes.titlesize",
                "xtick.labelsize",
                "ytick.labelsize",
                "legend.fontsize",
            ):
                params[key] = self.fontsize
        else:
            params["font.size"] = float(self.fontsize)
        return params

    def to_dict(self) -> dict[str, Any]:
        """Return the style as plain data (for ``CONFIGS``)."""
        return asdict(self)


def _apply(plt: Any, style: PlotStyle) -> None:
    from cycler import cycler

    plt.close("all")
    plt.rcParams.update(style.rc_params())
    plt.rcParams["axes.prop_cycle"] = cycler(color=[COLORS[name] for name in _CYCLE])


class LazyPyplot:
    """Stands for ``matplotlib.pyplot``; imports and styles it on first attribute access."""

    def __init__(self, style: PlotStyle) -> None:
        self._style = style
        self._module: Any = None

    def _load(self) -> Any:
        if self._module is None:
            import matplotlib.pyplot as plt

            _apply(plt, self._style)
            self._module = plt
        return self._module

    @property
    def loaded(self) -> bool:
        """Whether pyplot has been imported through this object."""
        return self._module is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __repr__(self) -> str:
        state = "loaded" if self._module is not None else "not imported yet"
        return f"<lazy matplotlib.pyplot ({state})>"


def _use_agg() -> None:
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg", force=True)
    else:
        os.environ["MPLBACKEND"] = "Agg"


def configure_matplotlib(
    plt: Any = None, *, agg: bool = False, style: PlotStyle | None = None
) -> tuple[Any, dict[str, str]]:
    """Apply the run's plotting settings and return ``(plt, COLORS)``.

    Parameters
    ----------
    plt
        ``matplotlib.pyplot`` to style now, or ``None`` for a :class:`LazyPyplot` that styles it
        on first use.
    agg
        Select the non-interactive Agg backend (headless runs, clusters, tests).
    style
        The settings (default :class:`PlotStyle`).

    Returns
    -------
    tuple
        The pyplot module (or its lazy stand-in) and a copy of :data:`COLORS`.
    """
    style = style or PlotStyle()
    if agg:
        _use_agg()
    if plt is None:
        plt = LazyPyplot(style)
    elif not isinstance(plt, LazyPyplot):
        _apply(plt, style)
    return plt, dict(COLORS)


def close_figures() -> None:
    """Close every open figure if pyplot was imported (a no-op otherwise)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")

"""A reproducible analysis script: simulate noisy data, fit a line, save a table and a figure.

Run it twice and compare the two run folders::

    python reproducible_script.py --n-samples 200 --noise 0.3
    python reproducible_script.py --help

Each run gets ``reproducible_script_out/RUNNING/<ID>/`` with ``logs/`` and ``CONFIGS/``, and
moves to ``FINISHED_SUCCESS/<ID>/`` when ``main`` returns 0. The second run checks that its
simulated data are the same as the first's (``rngg.verify``, which compares runs with the same
seed and arguments) and stops with an error if not.
"""

# CONFIG, plt, COLORS, rngg and logger are put in this module's globals by @session.
# ruff: noqa: F821

from __future__ import annotations

import numpy as np

from labsession.runs import session


@session(verbose=True, seed=42)
def main(n_samples: int = 100, noise: float = 0.5, slope: float = 2.0, plot: bool = True) -> int:
    """Fit a line to simulated noisy samples.

    Parameters
    ----------
    n_samples
        Number of simulated samples.
    noise
        Standard deviation of the added Gaussian noise.
    slope
        True slope of the simulated line.
    plot
        Save a figure of the data and the fit.
    """
    x = np.linspace(0.0, 1.0, n_samples)
    y = slope * x + rngg("noise").normal(scale=noise, size=n_samples)
    rngg.verify(y, "y")  # the same data as earlier runs with this seed and these arguments?

    fitted_slope, intercept = np.polyfit(x, y, deg=1)
    logger.info("fitted slope %.4f (true %.1f)", fitted_slope, slope)
    print(f"slope={fitted_slope:.6f} intercept={intercept:.6f}")

    out = CONFIG["SDIR_RUN"]  # this run's folder
    np.savetxt(out / "samples.csv", np.column_stack([x, y]), delimiter=",", header="x,y")
    if plot:
        fig, ax = plt.subplots()
        ax.plot(x, y, ".", color=COLORS["grey"], label="samples")
        ax.plot(x, fitted_slope * x + intercept, color=COLORS["red"], label="fit")
        ax.set(xlabel="x", ylabel="y")
        ax.legend()
        fig.savefig(out / "fit.png")
    return 0


if __name__ == "__main__":
    main()

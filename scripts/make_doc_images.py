"""Make the pictures of the docs that come from labsession's own commands (re-runnable).

    .venv/bin/python scripts/make_doc_images.py            # writes docs/img/plot.png

docs/img/plot.png: ``labsession plot`` of a demo-like session (the demo's classes and EMG-like
signals, 8 channels at 2048 Hz, labelled rest / fist / rest / open ...) in which the source
went quiet for 0.4 s, so the picture shows traces, labels and a gap. The PNG is re-quantised
to at most 256 colours to stay under ~200 kB.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from labsession.recording import Session, StreamInfo
from labsession.testing import class_patterns, emg_like

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("Rest", "Fist", "Open")
MAX_BYTES = 200_000


def demo_session(base: Path, *, fs: float = 2048.0, n_channels: int = 8, seed: int = 3) -> Path:
    """A packed labelled session like ``labsession demo`` records, with one 0.4 s gap."""
    rng = np.random.default_rng(seed)
    phase = 1.5
    cues = [0, 1, 0, 2, 0, 1, 0, 2, 0]
    patterns = class_patterns(len(CLASSES), n_channels, seed=seed)
    per_phase = round(phase * fs)
    classes = np.repeat(cues, per_phase)
    gains = np.repeat(rng.uniform(0.6, 1.4, size=(len(cues), n_channels)), per_phase, axis=0)
    emg = emg_like(patterns[classes] * gains, fs, rng=rng)
    t0 = 1000.0
    ts = t0 + np.arange(len(emg)) / fs
    keep = (ts < t0 + 7.9) | (ts >= t0 + 8.3)  # the source went quiet for 0.4 s
    emg, ts = emg[keep], ts[keep]
    session = Session(base, app_name="labsession-demo", class_names=list(CLASSES))
    session.init_stream("emg", StreamInfo(n_channels, fs))
    for start in range(0, len(emg), 64):
        session.append("emg", emg[start : start + 64], ts[start : start + 64])
    for i, cls in enumerate(cues):
        session.add_label(cls, timestamp=t0 + i * phase)
    return session.pack_to_zip()


def plot_png(out: Path, *, width: int = 1200) -> Path:
    """Write ``out`` with ``labsession plot`` on :func:`demo_session`; returns ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        session = demo_session(Path(tmp))
        command = ["labsession", "plot", str(session), "-o", str(out), "--width", str(width)]
        subprocess.run([sys.executable, "-m", *command], check=True, stdout=subprocess.DEVNULL)
    _shrink(out)
    return out


def _shrink(path: Path) -> None:
    """Re-save ``path`` with an adaptive palette of at most 256 colours (lossless-looking)."""
    with Image.open(path) as image:
        quantized = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    quantized.save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = plot_png(args.out / "plot.png")
    size = path.stat().st_size
    sys.stdout.write(f"{path}: {size / 1000:.0f} kB\n")
    if size > MAX_BYTES:
        sys.exit(f"{path} is {size} bytes, more than {MAX_BYTES}: lower the width")


if __name__ == "__main__":
    main()

"""The sources sit below the test helpers: nothing in ``labsession.sources`` imports upward."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np

import labsession.sources
from labsession import testing
from labsession.sources import SyntheticSource

#: Packages built on the sources (or on everything): a source must not import them.
_ABOVE = ("labsession.testing", "labsession.acquisition", "labsession.widgets", "labsession.cli")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_no_source_module_imports_a_higher_layer():
    folder = Path(labsession.sources.__file__).parent
    upward = {
        f"{path.name}: {name}"
        for path in sorted(folder.glob("*.py"))
        for name in _imports(path)
        if name.startswith(_ABOVE)
    }
    assert not upward


def test_importing_the_sources_does_not_load_the_test_helpers():
    code = (
        "import sys, labsession.sources; "
        "print(sorted(m for m in sys.modules if m.startswith('labsession.testing')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_testing_reexports_the_generators_the_source_uses():
    from labsession.sources._signals import class_patterns, emg_like

    assert testing.class_patterns is class_patterns
    assert testing.emg_like is emg_like
    patterns = testing.class_patterns(3, 6, seed=4)
    assert patterns.shape == (3, 6)
    np.testing.assert_allclose(patterns[0], 0.05)  # rest: small and equal on every channel
    assert (patterns[1:].max(axis=1) > 1.0).all()  # each gesture drives some channels hard
    # SyntheticSource draws its per-class amplitudes from the same generator and seed
    source = SyntheticSource(6, 1000.0, classes=3, seed=4)
    np.testing.assert_array_equal(source._patterns, patterns)
    signal = testing.emg_like(np.ones((2000, 2)), 1000.0, rng=np.random.default_rng(0))
    assert signal.shape == (2000, 2)
    assert signal.dtype == np.float32
    assert abs(float(signal.std()) - 1.0) < 0.05

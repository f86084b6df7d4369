from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from labsession.errors import ReproducibilityError
from labsession.runs import RandomStateManager, fix_seeds
from labsession.runs._seeds import CHECKSUM_FILE


def test_named_generator_ignores_what_was_asked_first():
    a = RandomStateManager(7)
    first = a("noise").normal(size=5)
    b = RandomStateManager(7)
    b("other").random(100)
    b("more").integers(0, 10, size=3)
    assert np.array_equal(b("noise").normal(size=5), first)


def test_same_name_returns_same_generator_and_names_differ():
    rng = RandomStateManager(1)
    assert rng("x") is rng("x")
    assert not np.array_equal(
        RandomStateManager(1)("x").random(4), RandomStateManager(1)("y").random(4)
    )
    assert not np.array_equal(
        RandomStateManager(1)("x").random(4), RandomStateManager(2)("x").random(4)
    )


def test_fresh_restarts_the_stream():
    rng = RandomStateManager(3)
    first = rng("a").random(3)
    assert np.array_equal(rng.fresh("a").random(3), first)


def test_bad_seed_and_name_are_refused():
    with pytest.raises(ValueError, match="seed"):
        RandomStateManager(-1)
    with pytest.raises(ValueError, match="name"):
        RandomStateManager(0)("")


def test_fix_seeds_makes_global_generators_repeat():
    legacy = np.random  # the legacy global state is what scripts use and what is seeded
    seeded = fix_seeds(11)
    first = (random.random(), legacy.rand())
    fix_seeds(11)
    assert (random.random(), legacy.rand()) == first
    assert seeded[:2] == ["random", "numpy"]


def test_verify_across_runs(tmp_path):
    run1, run2, run3 = (tmp_path / name for name in ("r1", "r2", "r3"))
    first = RandomStateManager(5, run_dir=run1)
    data = first("data").normal(size=(3, 4))
    assert first.verify(data, "data")
    stored = json.loads((run1 / CHECKSUM_FILE).read_text())
    assert stored["seed"] == 5
    assert set(stored["arrays"]) == {"data"}

    second = RandomStateManager(5, run_dir=run2, history_dirs=[run1])
    assert second.verify(second("data").normal(size=(3, 4)), "data")

    third = RandomStateManager(5, run_dir=run3, history_dirs=[run2, run1])
    with pytest.raises(ReproducibilityError, match=r"'data' differs from .*r2"):
        third.verify(data + 1e-9, "data")


def test_verify_ignores_runs_with_another_seed(tmp_path):
    RandomStateManager(5, run_dir=tmp_path / "a").verify(np.zeros(3), "z")
    other = RandomStateManager(6, run_dir=tmp_path / "b", history_dirs=[tmp_path / "a"])
    assert other.verify(np.ones(3), "z")


def test_verify_within_a_run_catches_shape_change():
    rng = RandomStateManager(0)
    rng.verify(np.zeros(4), "v")
    with pytest.raises(ReproducibilityError, match="shape"):
        rng.verify(np.zeros((2, 2)), "v")


def test_torch_is_seeded_when_the_script_imports_it(tmp_path):
    # A stand-in torch package first on the path: records the seed it is given.
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "SEEDS = []\n"
        "def manual_seed(seed):\n    SEEDS.append(seed)\n"
        "class cuda:\n    @staticmethod\n    def is_available():\n        return False\n"
    )
    code = (
        "import sys\n"
        "from labsession.runs import fix_seeds\n"
        "print(fix_seeds(17))\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "print(torch.SEEDS)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['random', 'numpy', 'torch (on import)']", "[17]"]

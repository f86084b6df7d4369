"""A real LSL outlet in another process, pushing a sample-counter stream on loopback."""

import subprocess
import sys
import uuid

import pytest

OUTLET = """
import sys, time
import numpy as np
from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock

name, source_id = sys.argv[1], sys.argv[2]
n_total, fs, start = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
info = StreamInfo(name, "EMG", 3, fs, "float32", source_id)
info.set_channel_names(["counter", "double", "const"])
outlet = StreamOutlet(info, chunk_size=16)
print("ready", flush=True)
sys.stdin.readline()                       # wait until the test's inlet is connected
t0 = local_clock()
for first in range(start, start + n_total, 50):
    index = np.arange(first, min(first + 50, start + n_total))
    data = np.stack([index, 2 * index, np.ones_like(index)], axis=1).astype(np.float32)
    outlet.push_chunk(data, 1000.0 + index / fs)
    time.sleep(50 / fs)
print("done", flush=True)
sys.stdin.readline()                       # keep the outlet alive until told to go
"""


class Outlet:
    """Handle on an outlet process: ``go()`` starts pushing, ``wait_done()``, ``close()``."""

    def __init__(self, name, source_id, n_total, fs, start=0):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", OUTLET, name, source_id, str(n_total), str(fs), str(start)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def go(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def wait_done(self):
        assert self.proc.stdout.readline().strip() == "done"

    def close(self, kill=False):
        if kill:
            self.proc.kill()
        else:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def lsl_name():
    return f"labsession-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def outlet_factory():
    outlets = []

    def make(*args, **kwargs):
        outlet = Outlet(*args, **kwargs)
        outlets.append(outlet)
        return outlet

    yield make
    for outlet in outlets:
        if outlet.proc.poll() is None:
            outlet.close(kill=True)

"""A recording process killed with SIGKILL leaves a readable session: every label, <= ~1 s lost."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from labsession.recording import Session, open_session_store

FS = 1000.0
RECORDER = """
import sys, time
import numpy as np
from labsession.recording import Session, StreamInfo

session = Session(sys.argv[1], class_names=["Rest", "Fist"])
session.init_stream("emg", StreamInfo(4, {fs}))
print("path", session.path, flush=True)
start, sent = time.monotonic(), 0
while True:
    due = int((time.monotonic() - start) * {fs})
    while sent + 64 <= due:
        index = np.arange(sent, sent + 64)
        data = (index[:, None] * 4 + np.arange(4)).astype(np.float32)
        session.append("emg", data, 50 + index / {fs})
        sent += 64
        print("samples", sent, flush=True)
        if sent % 512 == 0:
            event = session.add_label(sent // 512 % 2, timestamp=50 + sent / {fs})
            print("label", event.timestamp, event.class_index, flush=True)
    time.sleep(0.002)
"""


@pytest.mark.slow
def test_sigkill_loses_at_most_last_second_and_no_label(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORDER.format(fs=FS), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    folder, appended, labels = None, 0, []
    deadline = time.monotonic() + 60
    try:
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "path":
                folder = rest[0]
            elif kind == "samples":
                appended = int(rest[0])
            elif kind == "label":
                labels.append((float(rest[0]), int(rest[1])))
            if appended >= 3.5 * FS or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert appended >= 3.5 * FS, "recorder did not produce data in time"

    with open_session_store(folder) as store:
        assert [(e.timestamp, e.class_index) for e in store.label_track][: len(labels)] == labels
        data, ts = store.get_continuous("emg")
    # Everything on disk is exactly what was appended, in order, with no invented samples...
    index = np.arange(len(ts))
    np.testing.assert_array_equal(data, (index[:, None] * 4 + np.arange(4)).astype(np.float32))
    np.testing.assert_array_equal(ts, 50 + index / FS)
    # ...and at most the last unflushed second (plus one write in flight) is missing.
    assert len(ts) >= appended - 1.5 * FS

    session = Session.attach(folder)
    zip_path = session.pack_to_zip()
    with open_session_store(zip_path) as packed:
        assert packed.n_samples("emg") == len(ts)
        assert len(packed.label_track) >= len(labels)


def test_unclosed_session_is_written_at_interpreter_exit(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from labsession.recording import Session, StreamInfo\n"
        "s = Session(sys.argv[1])\n"
        "s.init_stream('emg', StreamInfo(2, 1000.0))\n"
        "s.append('emg', np.ones((300, 2), np.float32), np.arange(300) / 1000)\n"
        "print(s.path)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    with open_session_store(out.stdout.strip()) as store:
        assert store.n_samples("emg") == 300  # less than a chunk, never flushed by the script

"""A disk that fills up under a live App: a real full file system (a small tmpfs).

The child process runs in its own user and mount namespace (``unshare -rm``) with a 4 MiB tmpfs
mounted over a folder, fills it with a file, records a synthetic stream into it until writes
fail, then checks, from inside, what a user would see; it prints its findings as JSON.
"""

import json
import sys

import pytest

CHILD = r"""
import errno, json, logging, os, sys, time
from pathlib import Path

from labsession import App, Stream
from labsession.errors import SessionError
from labsession.recording import Session, open_session_store, session_lock_holder
from labsession.sources import SyntheticSource
from labsession.testing import wait_until

root = Path(sys.argv[1])
base = root / "sessions"
base.mkdir()
logged = []


class Keep(logging.Handler):
    def emit(self, record):
        logged.append(record.getMessage())


logging.getLogger("labsession").addHandler(Keep())
logging.getLogger("labsession").setLevel(logging.INFO)



def free(path):
    os.unlink(path)


out = {}
app = App("diskfull", class_names=["Rest", "Fist"])
stream = Stream("emg", SyntheticSource(16, 4000.0, classes=["Rest", "Fist"]), window_seconds=0.5)
app.streams(stream)
app.start()
assert app.wait_connected(10) == []


def record_until_full():
    fill(root / "filler", leave=700_000)
    session = app.start_recording(base)
    app.add_label(0)
    started = time.monotonic()
    assert wait_until(lambda: app.ctx.state == "error", timeout=30), app.ctx.state
    return session, time.monotonic() - started


def still_acquiring():
    # The ring buffer and health go on: more samples, newer timestamps.
    n0, last0 = stream.n_samples, stream.get_window()[1][-1]
    grew = wait_until(lambda: stream.n_samples > n0 + 2000, timeout=10)
    return bool(grew and stream.get_window()[1][-1] > last0)


# 1. The disk fills up; stop while it is still full: labels are logged, the folder kept.
session, took = record_until_full()
folder = session.path
out["state_1"] = app.ctx.state
out["message_1"] = app.ctx.status_message
out["acquiring_1"] = still_acquiring()
out["append_errors"] = stream.append_errors > 0
fill(root / "filler2")
event = app.add_label(1)
out["label_returned"] = [event.timestamp, event.class_index]
out["label_in_memory"] = [e.class_index for e in session.label_track]
out["locked_while_recording"] = session_lock_holder(folder).pid == os.getpid()
app.stop_recording()
out["state_after_stop_1"] = app.ctx.state
out["stop_message_1"] = app.ctx.status_message
out["folder_kept_1"] = folder.is_dir()
out["no_zip_1"] = not any(base.glob("*.zip"))
out["labels_logged_1"] = [m for m in logged if "labels.json not written" in m]
out["unlocked_after_stop_1"] = session_lock_holder(folder) is None
out["acquiring_after_stop_1"] = still_acquiring()
free(root / "filler")
free(root / "filler2")
attached = Session.attach(folder)
zip_1 = attached.pack_to_zip()
with open_session_store(zip_1) as store:
    out["packed_1"] = {"n": store.n_samples("emg"), "labels": len(store.label_track)}

# 2. The disk fills up; space is back before the stop: labels and write_errors reach the disk.
session, took = record_until_full()
folder = session.path
out["state_2"] = app.ctx.state
fill(root / "filler2")
event = app.add_label(1)
free(root / "filler2")
free(root / "filler")
last_ts_before_stop = float(stream.get_window()[1][-1])
# Once a newer chunk is in the ring buffer, the one above was handed to the session.
assert wait_until(lambda: stream.get_window()[1][-1] > last_ts_before_stop, timeout=10)
app.stop_recording()
out["state_after_stop_2"] = app.ctx.state
out["folder_kept_2"] = folder.is_dir()
meta = json.loads((folder / "meta.json").read_text())
out["write_errors"] = meta.get("write_errors")
out["labels_on_disk_2"] = json.loads((folder / "labels.json").read_text())
out["label_2"] = [event.timestamp, event.class_index]
out["last_ts_before_stop"] = last_ts_before_stop
with open_session_store(folder) as store:
    out["ts_on_disk"] = [float(store.get_timestamps("emg")[-1]), store.n_samples("emg")]
zip_2 = Session.attach(folder).pack_to_zip()
with open_session_store(zip_2) as store:
    out["packed_2"] = {
        "n": store.n_samples("emg"),
        "labels": [[e.timestamp, e.class_index] for e in store.label_track],
        "write_errors": store.meta.get("write_errors"),
    }
out["left_in_base"] = sorted(p.name for p in base.iterdir())
out["zips"] = sorted(p.name for p in (zip_1, zip_2))
for s in app.ctx.streams.values():
    s.stop()
print(json.dumps(out), flush=True)
"""

FS = 4000.0


@pytest.mark.slow
def test_full_disk_under_a_live_app_keeps_acquiring_and_the_session_recoverable(small_disk):
    child = small_disk.FILL + CHILD
    proc = small_disk.run("4m", [sys.executable, "-c", child, str(small_disk.folder)], timeout=110)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])

    # While full: state "error" naming the cause; acquisition goes on; labels are returned.
    assert out["state_1"] == "error"
    assert "No space left on device" in out["message_1"]
    assert out["acquiring_1"]
    assert out["append_errors"]
    assert out["label_returned"][1] == 1
    assert out["label_in_memory"] == [0, 1]
    assert out["locked_while_recording"]
    # Stop returns, keeps the folder unpacked, says why; the labels it could not write are logged.
    assert out["state_after_stop_1"] == "idle"
    assert "kept unpacked" in out["stop_message_1"]
    assert "No space left on device" in out["stop_message_1"]
    assert out["folder_kept_1"]
    assert out["no_zip_1"]
    assert out["unlocked_after_stop_1"]
    assert out["acquiring_after_stop_1"]
    assert any(str(out["label_returned"][0]) in m for m in out["labels_logged_1"])
    # Once space is freed, attach + pack finish it.
    assert out["packed_1"]["n"] > 0

    # Space back before the stop: the label added while full is on disk, and so is the loss.
    assert out["state_2"] == "error"
    assert out["state_after_stop_2"] == "idle"
    assert out["folder_kept_2"]
    assert out["label_2"] in [[e["timestamp"], e["class_index"]] for e in out["labels_on_disk_2"]]
    (entry,) = out["write_errors"]
    assert "No space left on device" in entry["error"]
    lost = entry["lost"]["emg"]
    last_on_disk, n_on_disk = out["ts_on_disk"]
    # The loss starts right after the last sample on disk and runs, gapless, to the stop.
    assert lost["first_timestamp"] == pytest.approx(last_on_disk + 1 / FS, abs=1e-6)
    assert lost["last_timestamp"] >= out["last_ts_before_stop"] - 1e-6
    span = round((lost["last_timestamp"] - lost["first_timestamp"]) * FS) + 1
    assert lost["n_samples"] == span
    assert out["packed_2"]["n"] == n_on_disk
    assert out["label_2"] in out["packed_2"]["labels"]
    assert out["packed_2"]["write_errors"] == out["write_errors"]
    # Nothing but the two zips is left (no lock, no temporary file, no folder).
    assert out["left_in_base"] == out["zips"]

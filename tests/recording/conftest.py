import json
import threading
from pathlib import Path

import pytest

MYOGESTIC = Path(__file__).parent.parent / "data" / "myogestic"


@pytest.fixture(scope="session")
def myogestic_dir():
    """Folder holding MyoGestic's fixture session (folder/, sample.session.zip, expected.json)."""
    return MYOGESTIC


@pytest.fixture(scope="session")
def myogestic_expected():
    """What MyoGestic's own readers returned for its fixture session (see its README)."""
    return json.loads((MYOGESTIC / "expected.json").read_text())


@pytest.fixture(params=["folder", "sample.session.zip"])
def myogestic_session(request):
    """The MyoGestic-written session, as a folder and as its zip."""
    return MYOGESTIC / request.param


def outcome_within(action, seconds, hang):
    """``action()``'s result or the exception it raised; a hang fails the test with ``hang``
    (the thread is a daemon) instead of hanging the suite."""
    outcome = []

    def run():
        try:
            outcome.append(action())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), hang
    return outcome[0]

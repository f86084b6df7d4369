from pathlib import Path

import pytest


@pytest.fixture
def myogestic_zip():
    return Path(__file__).parent.parent / "data" / "myogestic" / "sample.session.zip"

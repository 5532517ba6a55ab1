"""The journal's two projection modes: tests that take ``projection`` run once with the SQLite
projection as a thread of the test process and once as a child process (what the server runs)."""
from __future__ import annotations

import pytest


@pytest.fixture(params=["thread", "process"])
def projection(request) -> str:
    return request.param

"""conftest.py: the fixture the S3 tests share.

`server`: a moto S3 server on 127.0.0.1 with signature checking, one per test
module (tests that also need a fault proxy in front of it define their own)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from s3_fixtures import MotoServer  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MotoServer(str(tmp_path_factory.mktemp("moto")))
    yield srv
    srv.stop()

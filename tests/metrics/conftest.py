"""tests/metrics: normal forms cached on disk go to a folder of this test session, never the
user's cache (a stale entry there must not answer for the code under test)."""

import pytest


@pytest.fixture(autouse=True, scope="package")
def _metrics_disk_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMCORE_CACHE", str(tmp_path_factory.mktemp("symcore_cache")))
    yield
    mp.undo()

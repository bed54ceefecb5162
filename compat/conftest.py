"""conftest.py of a run of dask/distributed's tests on shoal: the fixtures
of ``distributed.utils_test`` by shoal, and Dask's ``slow`` marker skipped.
"""

import pytest

from shoal.utils_test import *  # noqa: F403 (the fixtures, as Dask's conftest does)


def pytest_collection_modifyitems(config, items):
    """Skip the tests Dask marks ``slow``, as its own default run does."""
    skip = pytest.mark.skip(reason="slow (skipped by Dask's default run too)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

"""conftest.py of a run of dask/distributed's tests on shoal: the fixtures
of ``distributed.utils_test`` by shoal, and Dask's ``slow`` marker skipped.
"""

from shoal.utils_test import *  # noqa: F403 (the fixtures, as Dask's conftest does)

import pytest


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="slow (skipped by Dask's default run too)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

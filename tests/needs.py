"""What a test needs from the machine (PostgreSQL, Chromium, Node): skip when it is absent,
except under CI (env `CI=true`), where .ci/run installs everything and a missing part is a
failure, so a broken runner cannot pass by skipping."""
import os

import pytest


def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason, allow_module_level=False):
    """Skip the test (or module) for `reason`; under CI fail it instead."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}: .ci/run should have provided it", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)

"""Runs after the in-process pytester tests of this folder (alphabetical order): the
real gather must still be in place, or the live suites later in the same pytest
process would read a unit test's fake objects (seen once in CI)."""

import ducklake_infra.suites.live as live_module


def test_gather_is_the_real_one():
    assert live_module.gather.__module__ == "ducklake_infra.suites.live"
    assert live_module.gather.__name__ == "gather"

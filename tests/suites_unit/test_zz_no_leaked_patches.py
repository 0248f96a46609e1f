"""Runs after the in-process pytester tests of this folder (alphabetical order): the
real gather must still be in place, or the live suites later in the same pytest
process would read a unit test's fake objects (seen once in CI)."""

import suites.live


def test_gather_is_the_real_one():
    assert suites.live.gather.__module__ == "suites.live"
    assert suites.live.gather.__name__ == "gather"

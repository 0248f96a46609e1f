"""Tests marked ``disruptive`` (a whole-cluster restart, `down` then `up`) run after every
other test of the session, each group in its own order: the snapshot the other checks
judge stays the stack that was installed."""

from __future__ import annotations

pytest_plugins = ["pytester"]


def test_disruptive_tests_run_last_in_their_own_order(pytester):
    pytester.makepyfile(test_a='''
import pytest
@pytest.mark.disruptive
def test_restart(): pass
def test_one(): pass
@pytest.mark.disruptive
def test_down_up(): pass
''', test_b='''
def test_two(): pass
''')
    # a process of its own: the entry-point plugin loads as in any project
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--strict-markers")
    ran = [line.split("::")[1].split()[0] for line in res.stdout.lines
           if "::" in line and "PASSED" in line]
    assert ran == ["test_one", "test_two", "test_restart", "test_down_up"], res.stdout.str()

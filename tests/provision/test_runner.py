"""The one subprocess runner: timeouts, errors, redaction, read-only, dry run."""

import pytest

from provision.runner import CommandError, Redactor, Runner


def test_success_and_output(tmp_path):
    r = Runner(log_path=tmp_path / "log")
    res = r.run(["sh", "-c", "echo out; echo err >&2"])
    assert res.returncode == 0 and res.stdout == "out\n" and res.stderr == "err\n"
    assert "$ sh -c" in (tmp_path / "log").read_text()


def test_failure_carries_command_exit_code_and_stderr_tail(tmp_path):
    r = Runner(log_path=tmp_path / "log")
    with pytest.raises(CommandError) as ei:
        r.run(["sh", "-c", "echo boom >&2; exit 3"])
    e = ei.value
    assert e.returncode == 3 and "boom" in e.stderr_tail and e.argv[0] == "sh"
    assert "exit code 3" in str(e) and str(tmp_path / "log") in str(e)


def test_timeout_is_an_error():
    with pytest.raises(CommandError) as ei:
        Runner().run(["sleep", "5"], timeout=0.5)
    assert "timed out" in str(ei.value)


def test_missing_binary_is_one_clear_error():
    with pytest.raises(CommandError) as ei:
        Runner().run(["no-such-binary-ducklake"])
    assert "not found on PATH" in str(ei.value)


def test_secrets_never_reach_errors_or_logs(tmp_path):
    red = Redactor()
    red.add("s3cr3t-value")
    r = Runner(log_path=tmp_path / "log", redactor=red)
    with pytest.raises(CommandError) as ei:
        r.run(["sh", "-c", "echo password=s3cr3t-value >&2; exit 1", "s3cr3t-value"])
    assert "s3cr3t-value" not in str(ei.value)
    assert "***" in str(ei.value)
    assert "s3cr3t-value" not in (tmp_path / "log").read_text()


def test_environment_is_copied_not_mutated(monkeypatch):
    import os
    monkeypatch.setenv("DLI_PROBE", "outer")
    r = Runner()
    res = r.run(["sh", "-c", "echo $DLI_PROBE"], env={"DLI_PROBE": "inner"})
    assert res.stdout.strip() == "inner"
    assert os.environ["DLI_PROBE"] == "outer"


def test_dry_run_records_mutations_but_runs_reads():
    r = Runner(dry_run=True)
    r.run(["sh", "-c", "exit 7"])  # recorded, not run
    assert r.planned == [["sh", "-c", "exit 7"]]
    assert r.run(["echo", "hi"], mutating=False).stdout == "hi\n"


def test_run_logged_streams_to_log(tmp_path):
    r = Runner(log_path=tmp_path / "log")
    r.run_logged(["sh", "-c", "echo line1; echo line2"])
    text = (tmp_path / "log").read_text()
    assert "line1" in text and "line2" in text
    with pytest.raises(CommandError) as ei:
        r.run_logged(["sh", "-c", "echo failing-step; exit 4"])
    assert "failing-step" in ei.value.stderr_tail


def test_public_names_are_never_redacted():
    red = Redactor()
    red.allow("ducklake")
    red.add("ducklake", "r4nd0m-pw")  # a Secret that repeats the spec's user name
    assert red("user ducklake password r4nd0m-pw") == "user ducklake password ***"
    red2 = Redactor()
    red2.add("ducklake")
    red2.allow("ducklake")  # allowing later also un-registers it
    assert red2("ducklake") == "ducklake"

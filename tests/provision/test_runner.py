"""The one subprocess runner: timeouts, errors, redaction, read-only, dry run."""

import pytest

from ducklake_infra.provision.runner import CommandError, Redactor, Runner


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


def test_log_is_private_from_the_first_byte(tmp_path):
    log = tmp_path / "logs" / "run.log"
    Runner(log_path=log).run(["true"])
    assert log.stat().st_mode & 0o777 == 0o600
    assert log.parent.stat().st_mode & 0o777 == 0o700
    old = tmp_path / "old.log"      # a log left world-readable by an earlier version
    old.write_text("x\n")
    old.chmod(0o644)
    Runner(log_path=old).run(["true"])
    assert old.stat().st_mode & 0o777 == 0o600


SECRET_JSON = '{"kind":"List","items":[{"kind":"Secret","data":{"password":"%s"}}]}'


@pytest.mark.parametrize("exit_code", [0, 1])
def test_sensitive_output_never_reaches_log_or_error(tmp_path, exit_code):
    """Finding 1: kubectl prints partial JSON (Secrets included) and exits 1 when another
    kind of the same call is forbidden. The values are not registered yet: a sensitive
    read must keep its stdout out of the log and the error whatever the exit code."""
    import base64
    from ducklake_infra.provision.guard import find_leaks
    value = "n0t-yet-kn0wn-pw"
    b64 = base64.b64encode(value.encode()).decode()
    (tmp_path / "out.json").write_text(SECRET_JSON % b64)  # not on the logged command line
    script = (f"cat {tmp_path / 'out.json'}; "
              f"echo 'Error from server (Forbidden): serviceaccounts is forbidden' >&2; "
              f"exit {exit_code}")
    r = Runner(log_path=tmp_path / "log")
    res = r.run(["sh", "-c", script], check=False, sensitive=True)
    assert b64 in res.stdout  # the caller gets the data
    with pytest.raises(CommandError) as ei:
        r.run(["sh", "-c", script.replace("exit 0", "exit 1")], sensitive=True)
    log = (tmp_path / "log").read_text()
    assert find_leaks(log, [value]) == [] and find_leaks(str(ei.value), [value]) == []
    assert "stdout not logged" in log and "Forbidden" in log


def test_failed_reads_are_logged_redacted_once_values_are_known(tmp_path):
    import base64
    from ducklake_infra.provision.guard import find_leaks
    red = Redactor()
    value = 'kn0wn"pw\\x'
    red.add(value)
    b64 = base64.b64encode(value.encode()).decode()
    r = Runner(log_path=tmp_path / "log", redactor=red)
    (tmp_path / "out.json").write_text(SECRET_JSON % b64)
    with pytest.raises(CommandError) as ei:
        r.run(["sh", "-c", f"cat {tmp_path / 'out.json'}; exit 1"])
    assert find_leaks((tmp_path / "log").read_text(), [value]) == []
    assert find_leaks(str(ei.value), [value]) == []


def test_a_planned_command_is_one_record():
    """Issue 12, item 4: argv, stdin, read or write, and the names on stdin travel
    together (no lists keyed by position that can drift apart)."""
    from ducklake_infra.provision.runner import PlannedCommand, Redactor
    red = Redactor()
    red.add("s3cr3t-value")
    r = Runner(dry_run=True, redactor=red)
    r.run(["kubectl", "apply", "-f", "-"], input="password: s3cr3t-value")
    r.run_logged(["docker", "build", "."])
    r.record(["kubectl", "get", "ns"], read=True)
    r.record(["kubectl", "apply", "--token=s3cr3t-value", "-f", "-"], stdin=["Secret a/b"])
    first, build, read, named = r.planned_commands
    assert first == PlannedCommand(["kubectl", "apply", "-f", "-"], "password: s3cr3t-value")
    assert build.input is None and not build.read
    assert read.line == "kubectl get ns   # read"
    shown = named.redacted(red)
    assert shown.input is None and "s3cr3t-value" not in shown.line
    assert shown.line.endswith("# stdin: Secret a/b")
    assert r.planned == [c.argv for c in r.planned_commands]
    assert not hasattr(r, "planned_inputs")

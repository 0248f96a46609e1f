"""`up`'s check that every MinIO server serves the stack's identities
(provision/minio_identity.py): a server refusing them is restarted, one at a time; a
restart that does not help, or a server that does not answer at all, is one clear error;
the signed check itself against a real MinIO (the bundle's binary) accepts the right
key and names the refusal of a wrong one without showing it."""

from __future__ import annotations

import pytest

from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.minio_identity import RESTARTS, bucket_check, serve_identities


def run(answers: dict[str, list[str | None]]):
    """``answers``: pod -> what refused() says on each ask (None: serves)."""
    asked, restarted = [], []

    def refused(pod):
        asked.append(pod)
        return answers[pod].pop(0)

    return serve_identities(list(answers), refused, restarted.append), asked, restarted


def test_servers_that_serve_are_left_alone():
    note, asked, restarted = run({"minio-0": [None], "minio-1": [None]})
    assert note == "2 servers serve the stack's identities"
    assert asked == ["minio-0", "minio-1"] and restarted == []


def test_a_server_that_refuses_is_restarted_and_asked_again():
    note, asked, restarted = run({"minio-0": [None], "minio-1": ["AccessDenied", None],
                                  "minio-2": [None]})
    assert restarted == ["minio-1"]
    assert asked == ["minio-0", "minio-1", "minio-1", "minio-2"]
    assert note.endswith("restarted minio-1 (AccessDenied)")


def test_a_restart_that_does_not_help_is_one_clear_error():
    with pytest.raises(DucklakeInfraError, match=r"minio-1 still refuses the stack's identity "
                                                 r"\(InvalidAccessKeyId\) after 2 restart"):
        run({"minio-1": ["InvalidAccessKeyId"] * (RESTARTS + 1)})


def test_a_server_that_does_not_answer_is_not_restarted():
    with pytest.raises(DucklakeInfraError, match="minio-0 did not answer the stack's identity "
                                                 "check: MaxRetryError"):
        run({"minio-0": ["MaxRetryError"]})


@pytest.mark.bundle
def test_the_signed_check_against_a_real_minio(tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
    from conftest import running_minio                       # tests/backend/conftest.py
    from backend_testlib import S3_ACCESS_KEY, S3_SECRET_KEY, free_port
    with running_minio(tmp_path / "data", tmp_path / "minio.log") as server:
        assert bucket_check(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, "raw") is None
        wrong = "not-the-secret-" + "x" * 20
        why = bucket_check(server.endpoint, S3_ACCESS_KEY, wrong, "raw")
        assert why == "SignatureDoesNotMatch" and wrong not in why
        assert bucket_check(server.endpoint, "nobody-here", wrong, "raw") == "InvalidAccessKeyId"
    assert bucket_check(f"127.0.0.1:{free_port()}", S3_ACCESS_KEY, S3_SECRET_KEY, "raw",
                        timeout_s=3) \
        not in (None, "AccessDenied", "InvalidAccessKeyId")

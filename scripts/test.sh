#!/usr/bin/env bash
# Every test: unit, chart, backend integration (real PostgreSQL + MinIO), image,
# and the kind cluster tests and conformance suites (pytest --cluster=kind); then the
# conformance suites of the distributed profile on a 4-node kind cluster of its own
# (stack.distributed.yaml), after the standalone cluster is gone: never both at once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
set +e
.venv/bin/pytest --cluster=kind \
  --html=reports/report.html --self-contained-html --junitxml=reports/junit.xml "$@"
rc=$?
echo "reports: $(pwd)/reports/report.html  $(pwd)/reports/junit.xml"
if [ -z "${DUCKLAKE_INFRA_SKIP_DISTRIBUTED:-}" ]; then
  .venv/bin/pytest ducklake_infra/suites --cluster=kind --stack stack.distributed.yaml \
    --report-dir=reports/distributed --html=reports/distributed/report.html \
    --self-contained-html --junitxml=reports/distributed/junit.xml "$@"
  rc_distributed=$?
  echo "reports: $(pwd)/reports/distributed/report.html  $(pwd)/reports/distributed/junit.xml"
  [ $rc -ne 0 ] || rc=$rc_distributed
fi
set -e
exit $rc

#!/usr/bin/env bash
# Every test: unit, chart, backend integration (real PostgreSQL + MinIO), image,
# and the kind cluster tests and conformance suites (pytest --cluster=kind).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
set +e
.venv/bin/pytest --cluster=kind \
  --html=reports/report.html --self-contained-html --junitxml=reports/junit.xml "$@"
rc=$?
set -e
echo "reports: $(pwd)/reports/report.html  $(pwd)/reports/junit.xml"
exit $rc

#!/usr/bin/env bash
# The main job: bring up the DuckLake stack on a kind cluster built from the
# bundle and check it against the plan; reports land in reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/pytest --cluster=kind ducklake_infra/suites tests/cluster \
  --html=reports/report.html --self-contained-html --junitxml=reports/junit.xml "$@"

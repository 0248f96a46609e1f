"""ducklake-infra: provisioner and conformance suite for the DuckLake stack."""

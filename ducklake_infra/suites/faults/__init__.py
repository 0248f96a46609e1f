"""The resilience suite (issue 13): faults injected while data flows, on kind only
(every test ``mutating``; never under --readonly). Select it alone with
``pytest ducklake_infra/suites/faults --cluster=kind``."""

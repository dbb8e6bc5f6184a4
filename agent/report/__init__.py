"""``giamsat report``: availability and coverage for a period, from a ledger or a Prometheus server,
as self-contained HTML and CSV."""

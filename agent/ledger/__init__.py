"""The outage ledger: a crash-safe journal of site state changes, the book rebuilt from it, and the
pipeline subscriber that writes it and exports its counters."""

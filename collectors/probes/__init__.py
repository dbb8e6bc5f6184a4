"""Connectivity probes: ICMP, TCP, HTTP(S)/TLS and DNS, one module per kind, blackbox_exporter's names."""

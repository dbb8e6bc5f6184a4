"""Ways out of the agent: the Prometheus HTTP endpoint and its exposition rendering, remote write."""

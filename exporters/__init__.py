"""Ways results leave the agent: the Prometheus endpoint, remote write, textfile."""

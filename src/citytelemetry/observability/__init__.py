"""Self-observation: pipeline counters, /metrics and /healthz, and self-metrics written to InfluxDB."""

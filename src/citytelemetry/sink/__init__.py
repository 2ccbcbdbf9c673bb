"""Sinks: line-protocol serialisation, InfluxDB writers, and the one wrapper that batches and retries."""

"""Ingest: the MQTT source, the topic scheme, and in-order acknowledgement once data is durable."""

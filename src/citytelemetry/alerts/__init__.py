"""In-stream alert rules generated from the device profiles, delivered through Alertmanager."""

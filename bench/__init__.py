"""The citytelemetry benchmark harness (issue 6): ``python -m bench`` — see bench/README.md."""

"""What the sidecar reports: Prometheus metrics, OTLP export, logs, and secret redaction."""

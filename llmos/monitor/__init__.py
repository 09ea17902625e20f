"""What the server tells operators: metric definitions (the one source for ``/metrics``, the Grafana
dashboard and the alert rules), the per-request record behind the access log and usage rows, and
opt-in tracing. A leaf: it imports only the store below it."""

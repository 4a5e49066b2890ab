"""Blueprint for operators' probes and scrapers: /healthz, /readyz and /metrics."""

"""Neural architecture search: spaces, strategies, estimators, latency tables, the supernet."""

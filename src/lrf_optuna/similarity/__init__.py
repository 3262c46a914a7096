"""Feature-map similarity without retraining: metrics, streamed capture, profile, proxies."""

"""The shared scoring harness: protocols, sliding windows, metrics, distributed evaluation, records."""

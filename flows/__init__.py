"""Prefect flows: one per stage event. Thin: each runs a `cbflow.stages` event and reports it."""

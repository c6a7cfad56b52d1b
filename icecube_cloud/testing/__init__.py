"""Helpers for tests, demos and benchmarks: real local services (S3 via moto, a pgstac STAC API).

Nothing here is mocked: each helper starts the real component on loopback and stops it again. The test
fixtures and the Makefile (``make catalog-up`` etc.) use the same code, so people and CI run the same thing.
"""

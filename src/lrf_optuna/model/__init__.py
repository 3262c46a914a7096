"""Keras models: graph rebuild, compressible layers, exact costs, materialization, refit."""

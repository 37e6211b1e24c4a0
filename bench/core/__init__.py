"""The foundation every package builds on: typed configuration, one-line errors, provenance.

It imports nothing else of the project (an import contract in pyproject.toml says so, and CI checks it).
"""

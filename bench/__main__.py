"""`python -m bench`: the same command line as the `bench` console script."""

from bench.cli import app

app()

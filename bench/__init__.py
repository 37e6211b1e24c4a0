"""aigc-edge-bench: the harness (scenarios, environment, runner, metrics, results, command line).

Importing this package has no side effects: nothing is registered, compiled or read at import.
"""

__version__ = "0.1.0"

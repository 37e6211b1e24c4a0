"""Workloads: random streams per purpose, arrival processes, request traces, and the task attributes they drive."""

from tasks.arrivals import ArrivalConfig, Arrivals, arrivals, draw_origins
from tasks.streams import Streams
from tasks.traces import Trace, TraceConfig, TraceError, read_trace, replay_windows, trace_sha256
from tasks.workload import IndexTable, Workload, arrivals_workload, generate_workload, index_table, workload_from_arrays

__all__ = [
    "Streams", "Workload", "IndexTable", "generate_workload", "arrivals_workload", "index_table", "workload_from_arrays",
    "ArrivalConfig", "Arrivals", "arrivals", "draw_origins",
    "Trace", "TraceConfig", "TraceError", "read_trace", "replay_windows", "trace_sha256",
]

"""Workloads: random streams per purpose, and the arrival process and task attributes they drive."""

from tasks.streams import Streams
from tasks.workload import IndexTable, Workload, generate_workload, index_table, workload_from_arrays

__all__ = ["Streams", "Workload", "IndexTable", "generate_workload", "index_table", "workload_from_arrays"]

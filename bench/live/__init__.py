"""Live mode: the scenario's edge servers as real model servers on Ray, a gateway that replays the workload in
real time and asks the scheduler, and the simulator's error against what was measured (docs/live.md).

    pipelines.py  a zoo model as a real diffusers pipeline fed token ids (no tokenizer, no download)
    server.py     one edge server: a Ray actor holding its models, serving its queue FIFO on one thread
    cluster.py    Ray started or joined, the servers as actors, everything stopped (processes, ports)
    gateway.py    the real-time replay: observation from the servers' queues, placements, links, faults
    (bench/experiments/runs/live_records.py: per-request records, the metrics from their timestamps, their replay)
    compare.py    profiles measured under the run's concurrency, the simulation of the run, the error
    session.py    one live run from start to finish (`run_live`)
    bundle.py     the run's result bundle, marked live

Ray is imported only when a run starts (the `ray` extra: pip install 'aigc-edge-bench[ray]').
"""

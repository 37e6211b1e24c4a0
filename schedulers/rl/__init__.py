"""Deep-RL schedulers of the paper, batched across the base stations' agents.

`lad-ts` (the paper's method), `d2sac-ts`, `sac-ts` and `dqn-ts`; see learner.py for what they share.
"""

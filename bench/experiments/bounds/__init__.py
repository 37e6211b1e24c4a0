"""How good any scheduler could be: lower bounds and exact optima per episode, in the slotted and the event time
model (`slotted.py`, `event.py`), cached per episode and summarised per scenario (`compute.py`, `files.py`)."""

"""The complaint-handling engine: BPMN definitions, cases, deadlines, replay.

Nothing here imports the web layer; `storage` is the only layer below.
"""

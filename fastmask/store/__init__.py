"""The run folder on disk: its file names, status and heartbeat, the records read back, and the one index
of run folders every view and the verdict find runs by."""

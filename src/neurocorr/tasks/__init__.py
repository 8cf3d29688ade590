"""The tasks behind the entry points (train, evaluate, match) and what they share.

Process-wide settings (threads, the host allocator, the plotting backend, signal handlers, MLflow
telemetry) are made here, by :func:`neurocorr.tasks.process.configure_process`, and nowhere else.
"""

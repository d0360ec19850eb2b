"""The engine's machinery: pools of worker slots, tasks, batches, settling, the worker side."""

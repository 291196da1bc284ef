"""Supervised processes: the supervisor and its loop, and the guardian that outlives the console."""

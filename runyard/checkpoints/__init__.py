"""Checkpoints of a run's worktree at its turn boundaries, and the restore of one in a
fork (issue 26)."""

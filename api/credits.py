"""The credit check before a run starts (exec, create-with-start): the core's
(``runyard.runs.checks``); ``InsufficientCredits`` answers 402."""

from __future__ import annotations

from runyard.runs.checks import check_credits

__all__ = ["check_credits"]

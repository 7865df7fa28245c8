"""Sandbox providers: where the agent's tools run."""

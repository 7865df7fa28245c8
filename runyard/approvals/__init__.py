"""Tool-call approvals: policies (``policy``), the approval object (``model``) and its
store (``store``). Import the submodule you need: the client imports only ``model``."""

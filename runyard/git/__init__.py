"""Git for runs: repository intake, the hardened clone, the push relay, the final patch,
and the ``GitProvider`` behind pull requests and issues."""

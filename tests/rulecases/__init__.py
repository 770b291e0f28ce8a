"""Developer tooling, not part of the product: the generators of the rule tests in
tests/ruleset/*.ini that are made from real NetFlow and real-time output
(scripts/update-rule-cases.py writes them; the tests fail when they are stale)."""

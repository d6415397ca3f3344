"""Repo-level pytest set-up for running the suites from a checkout.

The plugin itself arrives through its ``pytest11`` entry point
(``pip install -e .``, which scripts/setup.sh does); nothing else is needed
here, and nothing is duplicated from the plugin.
"""

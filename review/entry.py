"""The ``kepu`` console script.

`kepu rules ...` runs the pure screening commands without importing Flask or the app (a
whole-process scan of a large file is measured against plain jieba, bench/screening.py), and
`kepu receipt verify` checks a publication receipt the same way (offline, no database);
every other command goes through the Flask command group in review.cli.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:2] == ["rules"]:
        from review.rules_cli import rules_group

        rules_group(args=sys.argv[2:], prog_name="kepu rules")
        return
    if sys.argv[1:2] == ["receipt"]:  # offline: a CMS checks receipts without our database
        from review.receipt_cli import receipt_group

        receipt_group(args=sys.argv[2:], prog_name="kepu receipt")
        return
    from review.cli import main as full

    full()

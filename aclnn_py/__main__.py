"""Command line: ``python -m aclnn_py {info,barrier}``."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aclnn_py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="show the CANN install found and the op versions it exports")
    args, rest = parser.parse_known_args(argv)
    if args.command == "info":
        from .info import info_lines
        print("\n".join(info_lines()))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Write docs/configuration.md from the config classes (every field, its default and meaning).

    python scripts/gen_config_docs.py          # rewrite the file
    python scripts/gen_config_docs.py --check  # exit 1 when the file is stale; prints JSON
"""

import argparse
import json
import sys
from pathlib import Path

from ulmfit.phases.config_docs import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that the file is current")
    args = ap.parse_args()
    text = render()
    current = DOC.is_file() and DOC.read_text(encoding="utf-8") == text
    if not args.check and not current:
        DOC.write_text(text, encoding="utf-8")
    print(json.dumps({"file": str(DOC), "current": current, "written": not args.check and not current}))
    return 1 if args.check and not current else 0


if __name__ == "__main__":
    sys.exit(main())

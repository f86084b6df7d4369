"""Run one page's code blocks in order, in the working folder (started by test_docs_code.py).

``python _driver.py BLOCKS.json``: each entry is ``{"where", "kind", "code", "title",
"commands", "lang", "line", "page"}``. Python blocks share one namespace; command lines run in
bash with ``labsession`` meaning ``sys.executable -m labsession``. The first failure ends the
run with exit status 1 and a line naming the block (a Python block's traceback names the page
and the line).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import yaml

PRELUDE = (
    'labsession() { "$DOCS_PYTHON" -m labsession "$@"; }\n'
    'python() { "$DOCS_PYTHON" "$@"; }\n'
    "set -e -o pipefail\n"
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fail(where: str, what: str) -> None:
    sys.stderr.write(f"\nDOCS BLOCK FAILED at {where}: {what}\n")
    sys.exit(1)


def main() -> None:
    blocks = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    # As in a script the reader runs: `if __name__ == "__main__":` blocks run.
    namespace: dict[str, object] = {"__name__": "__main__"}
    env = {**os.environ, "DOCS_PYTHON": sys.executable}
    started = time.monotonic()
    for block in blocks:
        where, kind = block["where"], block["kind"]
        say(f"--- {where} ({kind}) at {time.monotonic() - started:.1f} s")
        if kind == "python":
            # Padded so a traceback names the page and the line the failing code is on.
            code = "\n" * (block["line"] - 1) + block["code"]
            exec(compile(code, block["page"], "exec"), namespace)
            sys.stdout.flush()
            sys.stderr.flush()
        elif kind == "file":
            path = Path(block["title"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block["code"], encoding="utf-8")
        elif kind == "data":
            try:
                if block["lang"] == "toml":
                    tomllib.loads(block["code"])
                elif block["lang"] == "json":
                    json.loads(block["code"])
                else:
                    yaml.safe_load(block["code"])
            except ValueError as exc:
                fail(where, f"{block['lang']} does not parse: {exc}")
        elif kind == "commands":
            for line in block["commands"]:
                say(f"$ {line}")
                done = subprocess.run(["bash", "-c", PRELUDE + line], env=env, check=False)
                if done.returncode != 0:
                    fail(where, f"`{line}` exited with status {done.returncode}")


if __name__ == "__main__":
    main()

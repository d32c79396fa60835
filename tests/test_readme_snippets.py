"""Every ```python block of README.md and docs/*.md runs as written, in its own process, on the simulator
and on the reference backend, so the documentation cannot drift from the code.

A block may be marked by an HTML comment on the line before it:
``<!-- device-only: why -->`` runs on the simulator; on the reference backend it must fail with
aclnn_py's BackendUnavailableError (the documented behaviour), and ``<!-- not-run: why -->`` is not
run (reported as a skip with the reason). Keep marked blocks rare.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"^<!--\s*(not-run|device-only):\s*(.+?)\s*-->$")
BACKENDS = ("reference", "device")


@dataclass
class Snippet:
    path: Path
    line: int                 # 1-based line of the opening fence
    code: str
    marker: Optional[str]     # None, "not-run" or "device-only"
    reason: str

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def find_snippets(path: Path) -> List[Snippet]:
    """The ```python blocks of ``path`` with the marker comment right before each (if any)."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            i += 1
            body = []
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            m = MARKER.match(prev)
            out.append(Snippet(path, start + 1, "\n".join(body) + "\n", m.group(1) if m else None,
                               m.group(2) if m else ""))
        i += 1
    return out


SNIPPETS = [s for doc in DOCUMENTS for s in find_snippets(doc)]


def run_snippet(snippet: Snippet, backend: str, tmp_path: Path, sim_home: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACLNN_PY_", "ASCEND_"))}
    env["ACLNN_PY_BACKEND"] = backend
    env["ACLNN_PY_CANN_HOME"] = str(sim_home)
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_the_documents_have_snippets():
    assert len(SNIPPETS) >= 5, [s.name for s in SNIPPETS]


def test_every_marker_precedes_a_python_block():
    """A marker that does not sit right before a block (a typo, a moved block) would silently not apply."""
    marked = {(s.path, s.line) for s in SNIPPETS if s.marker}
    for doc in DOCUMENTS:
        lines = doc.read_text().splitlines()
        for n, line in enumerate(lines):
            if MARKER.match(line.strip()):
                following = next(j for j in range(n + 1, len(lines)) if lines[j].strip())
                assert (doc, following + 1) in marked, f"{doc.name}:{n + 1}: marker not followed by a python block"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.name)
def test_snippet_runs(snippet, backend, tmp_path, cann_sim_home):
    if snippet.marker == "not-run":
        pytest.skip(f"{snippet.name} is marked not-run: {snippet.reason}")
    r = run_snippet(snippet, backend, tmp_path, cann_sim_home)
    if snippet.marker == "device-only" and backend == "reference":
        assert r.returncode != 0 and "BackendUnavailableError" in r.stderr, r.stdout + r.stderr
        return
    assert r.returncode == 0, f"{snippet.name} failed on the {backend} backend:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr

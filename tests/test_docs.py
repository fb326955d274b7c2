"""Every Python block of the README and of docs/ runs as written.

The blocks of one file run top to bottom in one namespace (a later block may use what an
earlier one defined, as a reader following the page would), in a temporary directory, so the
files a block writes do not land in the checkout. A block that raises fails the test and the
message names the file and the block's first line.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(page):
    """(line number, source) of each fenced Python block of a Markdown page."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in PYTHON_BLOCK.finditer(text)]


def test_the_pages_have_python_blocks():
    # the test below would pass vacuously if the fence pattern stopped matching
    assert len(python_blocks(ROOT / "README.md")) >= 1
    assert len(python_blocks(ROOT / "docs" / "guide.md")) >= 5


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    pytest.importorskip("distributed") if "xent.dask" in page.read_text() else None
    pytest.importorskip("torch") if "xent.torch" in page.read_text() else None
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for line, source in python_blocks(page):
        code = compile(source, f"{page.name}:{line}", "exec")
        try:
            exec(code, namespace)
        except Exception as error:  # name the block, keep the original traceback
            raise AssertionError(
                f"{page.name}, the block at line {line} raised {type(error).__name__}: {error}"
            ) from error
    capsys.readouterr()

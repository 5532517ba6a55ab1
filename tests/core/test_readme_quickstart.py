"""The README's library quick-start runs as written and prints what the README says."""
import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_block():
    text = README.read_text()
    section = text.split("## Library quick-start", 1)
    assert len(section) == 2, "README.md has no '## Library quick-start' section"
    match = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert match, "the quick-start section has no python code block"
    return match.group(1)


def test_readme_quickstart_runs_and_prints_what_it_claims():
    code = quickstart_block()
    assert 5 <= len(code.strip().splitlines()) <= 15     # "about 10 lines"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_quickstart"})
    lines = out.getvalue().splitlines()
    assert lines == [
        "FILLED [(1, 10050, 300), (2, 10060, 50)]",
        "(10000, 200) (10060, 50)",
        "[(10060, 50, 1)]",
    ]
    # the comments in the block state the same results
    assert "(10000, 200) (10060, 50)" in code and "[(10060, 50, 1)]" in code
    # and the prose after it quotes the first line
    assert "`FILLED [(1, 10050, 300), (2, 10060, 50)]`" in README.read_text()

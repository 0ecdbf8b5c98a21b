"""The README stays true: the diagram it links to comes from the transition table, and its test
command is the one CI runs."""

from pathlib import Path

from corequeue.core.lifecycle import mermaid_diagram

ROOT = Path(__file__).resolve().parent.parent


def test_the_state_diagram_is_drawn_from_the_transition_table() -> None:
    # The diagram moved with the lifecycle into the documentation, which the README links to.
    page = (ROOT / "docs" / "explanation" / "lifecycle.md").read_text()
    assert mermaid_diagram() in page
    assert "docs/explanation/lifecycle.md" in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.strip().splitlines()[-1]
    assert command.startswith("python3 -m venv .venv")
    assert command in readme

class OrchestratorError(Exception):
    """A preset, store or run that cannot go ahead; the message names the file, key or cell."""


def note(name: str, text: str) -> None:
    """A problem found and dealt with (something damaged set aside, and done again), for the person
    watching: one line naming what it concerns."""
    from orchestrator.console import say

    say(f"  note  {name}: {text}")


def one_line(error: BaseException | str) -> str:
    """An error's last line (where Python and Ray put what went wrong)."""
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__

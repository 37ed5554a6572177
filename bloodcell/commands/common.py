"""What several commands share: the --model option, the bfloat16 switch and JSON reports."""

import json
from pathlib import Path

MODEL_HELP = "run id or run directory (default: the default model)"
BFLOAT16_HELP = "compute in bfloat16 (weights stay float32): faster on CPUs with native bfloat16"


def report(result: dict, out: str | None) -> int:
    """Print `result` as JSON and, with `out`, also write it there (atomically)."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        from bloodcell import storage

        storage.write_bytes(Path(out), (text + "\n").encode())
    return 0


def said(answer) -> str:
    """One answer in words: its class, probability and status."""
    return f"{answer.label} ({answer.probabilities[answer.label]:.1%}, {answer.status})"


def log(line: str) -> None:
    """Progress lines of long commands, shown as they come."""
    print(line, flush=True)

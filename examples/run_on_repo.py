"""Run an agent on a repository and print what it produced.

    RUNYARD_API_KEY=ry_live_… .venv/bin/python examples/run_on_repo.py \\
        owner/name "Add a --version flag to the CLI" --model sonnet

The repository is an ``owner/name`` slug, an https/ssh URL, or (when the server allows
local repositories) a path. The script streams the run's events, answers the agent's
questions from the terminal, then prints the final text and the run's other outputs: a
pushed branch, a pull request, an issue, or the ``changes.patch`` of work not pushed.
Without a Claude key, try ``--model scripted`` (the prompt then runs as the demo agent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from runyard.client import Runyard, RunyardAPIError


def repo_argument(repo: str) -> str:
    """As ``runyard run --repo`` does: a relative path (``.``, ``../x``, ``~/x``) becomes the
    absolute path it names here (the API takes only absolute ones); the rest goes as given."""
    if repo in (".", "..", "~") or repo.startswith(("./", "../", "~/")):
        return str(Path(repo).expanduser().resolve())
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", help="owner/name, a git URL or a path")
    parser.add_argument("prompt", help="what the agent should do")
    parser.add_argument("--model", default=None, help="sonnet, opus, haiku, scripted …")
    parser.add_argument("--max-cost", type=float, default=None, help="USD cap for the run")
    args = parser.parse_args()

    with Runyard() as ry:  # RUNYARD_API_URL (default http://127.0.0.1:8000), RUNYARD_API_KEY
        try:
            run = ry.create(
                args.prompt,
                repo=repo_argument(args.repo),
                model=args.model,
                max_cost_usd=args.max_cost,
                start=True,
            )
            print(f"{run.id} started", file=sys.stderr)
            for event in ry.events(run.id):
                if event.type == "tool.call":
                    print(f"  ▸ {event.data['name']}", file=sys.stderr)
                elif event.type == "run.waiting_for_input":
                    answer = input(f"? {event.data['question']} ")
                    ry.answer(run.id, answer)
            run = ry.get(run.id)
        except RunyardAPIError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    print(f"{run.status} in {run.usage.turns} turns, ${run.usage.cost_usd:.4f}", file=sys.stderr)
    if run.error:
        print(f"error {run.error.code}: {run.error.message}", file=sys.stderr)
    if run.text:
        print(run.text)
    for out in run.outputs:
        fields = out.model_dump(by_alias=True, exclude_none=True)
        if out.type == "pr":
            print(f"pull request #{fields.get('number')}: {out.url}")
        elif out.type == "branch":
            print(f"branch {fields.get('name')} at {fields.get('sha')}: {out.url or ''}")
        elif out.type == "issue":
            print(f"issue #{fields.get('number')}: {out.url}")
        elif out.type == "patch":
            print(
                f"changes not pushed: artifact {fields.get('artifactId')} (changes.patch, "
                f"{fields.get('files')} files, +{fields.get('insertions')} "
                f"-{fields.get('deletions')})"
            )
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())

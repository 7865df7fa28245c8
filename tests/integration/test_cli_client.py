"""The client commands of ``runyard`` against the real stack; ``run --follow`` in a
pseudo-terminal, answering the question of a scripted run."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pexpect

from runyard.devserver import free_port
from tests.conftest import Keys, script
from tests.integration.test_cli import runyard
from tests.stack import ROOT, Stack


def spawn(stack: Stack, key: str, *args: str) -> pexpect.spawn[str]:
    env = {**stack.env, "RUNYARD_API_URL": stack.api_url, "RUNYARD_API_KEY": key}
    env.pop("NO_COLOR", None)
    return pexpect.spawn(
        sys.executable,
        ["-m", "cli", *args],
        env=env,
        cwd=str(ROOT),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 160),
    )


async def test_run_follow_in_a_terminal_prompts_for_the_answer(stack: Stack, keys: Keys) -> None:
    key = await keys.make("cli-pty")
    prompt = script(
        {"tool": "bash", "input": {"command": "seq 1 12"}},
        {"ask": "Which colour?"},
        {"text": "Painted it teal."},
    )
    child = spawn(stack, key, "run", prompt, "--model", "scripted", "--follow")
    child.logfile_read = transcript = io.StringIO()
    child.expect(r"run_\w+")
    run_id = str(child.after)
    # The tool's output: its last lines, not all of them.
    child.expect("12")
    child.expect(r"Which colour\?")
    child.expect("answer")
    child.sendline("teal")
    child.expect("→ answer: teal")  # the answer is shown as received
    child.expect("Painted it teal.")
    child.expect(r"completed · 3 turns · tokens [\d,]+ in / [\d,]+ out")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    # On a terminal the final text is shown once (it used to be printed again at the end).
    assert transcript.getvalue().count("Painted it teal.") == 1
    assert "seq 1 12" in transcript.getvalue() and "more above" in transcript.getvalue()
    got = runyard(stack, "runs", "get", run_id, key=key)
    run = json.loads(got.stdout)
    assert run["status"] == "completed"
    logs = runyard(stack, "logs", run_id, key=key)
    events = [json.loads(line) for line in logs.stdout.splitlines()]
    answered = [e for e in events if e["type"] == "run.input_received"]
    assert answered and answered[0]["data"]["content"] == "teal"


async def test_run_follow_piped_prints_the_final_text_once(stack: Stack, keys: Keys) -> None:
    """Standard output and standard error into one pipe (``2>&1 | tee``, a CI log): the
    final text streamed on standard error and was printed again on standard output."""
    key = await keys.make("cli-piped")
    prompt = script(
        {"tool": "bash", "input": {"command": "echo piped-tool"}},
        {"text": "The piped answer.\nIts second line."},
    )
    env = {**stack.env, "RUNYARD_API_URL": stack.api_url, "RUNYARD_API_KEY": key}
    merged = subprocess.run(
        [sys.executable, "-m", "cli", "run", prompt, "--model", "scripted", "--follow"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert merged.returncode == 0, merged.stdout
    assert merged.stdout.count("The piped answer.") == 1, merged.stdout
    assert merged.stdout.count("Its second line.") == 1, merged.stdout
    assert "piped-tool" in merged.stdout and "completed · 2 turns" in merged.stdout
    # Apart, standard output holds the id and the text, standard error the rest.
    apart = runyard(stack, "run", prompt, "--model", "scripted", "--follow", key=key)
    assert apart.returncode == 0, apart.stderr
    assert apart.stdout.splitlines()[1:] == ["The piped answer.", "Its second line."]
    assert "The piped answer." not in apart.stderr and "piped-tool" in apart.stderr


async def test_follow_then_ctrl_c_says_the_run_goes_on(stack: Stack, keys: Keys) -> None:
    key = await keys.make("cli-pty-interrupt")
    started = runyard(
        stack,
        "run",
        script({"ask": "Still there?"}, {"text": "bye"}),
        "--model",
        "scripted",
        key=key,
    )
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    child = spawn(stack, key, "follow", run_id)
    child.expect(r"Still there\?")
    child.expect("answer")
    child.sendintr()
    child.expect(f"{run_id} goes on")
    child.expect(f"runyard follow {run_id}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Traceback" not in (child.before or "")
    # The run still waits; answer it from the command line (`echo yes | runyard answer
    # ID -`: the newline is not part of the answer) and see it end.
    env = {**stack.env, "RUNYARD_API_URL": stack.api_url, "RUNYARD_API_KEY": key}
    answered = subprocess.run(
        [sys.executable, "-m", "cli", "answer", run_id, "-"],
        input="yes\n",
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answered.returncode == 0, answered.stderr
    followed = runyard(stack, "follow", run_id, key=key)
    assert followed.returncode == 0 and followed.stdout.strip() == "bye"
    assert "→ answer: yes\ncompleted" in followed.stderr, followed.stderr
    logs = [
        json.loads(line) for line in runyard(stack, "logs", run_id, key=key).stdout.splitlines()
    ]
    assert [e["data"]["content"] for e in logs if e["type"] == "run.input_received"] == ["yes"]


async def test_runs_list_get_cancel_and_errors(stack: Stack, keys: Keys) -> None:
    key = await keys.make("cli-runs")
    created = runyard(
        stack, "run", script({"sleep": 30}, {"text": "never"}), "--model", "scripted", key=key
    )
    run_id = created.stdout.strip()
    listed = runyard(stack, "runs", "list", key=key)
    assert listed.returncode == 0 and run_id in listed.stdout
    assert listed.stdout.splitlines()[0].split()[:3] == ["ID", "STATUS", "MODEL"]
    cancelled = runyard(stack, "cancel", run_id, key=key)
    assert cancelled.stdout.strip() == f"{run_id} cancelled"
    only = runyard(stack, "runs", "list", "--status", "cancelled", "--json", key=key)
    assert [r["id"] for r in json.loads(only.stdout)["data"]] == [run_id]
    assert json.loads(runyard(stack, "runs", "get", run_id, key=key).stdout)["id"] == run_id

    def one_line_error(out: object, code: int, *needles: str) -> None:
        assert getattr(out, "returncode") == code  # noqa: B009
        err = getattr(out, "stderr")  # noqa: B009
        assert err.count("\n") == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in err, err

    one_line_error(runyard(stack, "runs", "get", "run_nope", key=key), 1, "RUN_NOT_FOUND")
    one_line_error(runyard(stack, "answer", run_id, "late", key=key), 1, "RUN_NOT_WAITING")
    one_line_error(runyard(stack, "runs", "list", "--status", "bogus", key=key), 1, "VALIDATION")
    one_line_error(runyard(stack, "runs", "list", key="ry_live_wrong"), 1, "API_KEY_INVALID")
    one_line_error(runyard(stack, "runs", "list"), 2, "RUNYARD_API_KEY")
    nowhere = f"http://127.0.0.1:{free_port()}"
    one_line_error(
        runyard(stack, "runs", "list", "--api-url", nowhere, key=key), 1, "cannot reach", nowhere
    )


class _Html(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>Temporal</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def html_server() -> Iterator[str]:
    """Some other web server (the Temporal UI, a proxy's page): HTML for every GET."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_an_api_url_that_is_not_runyard_is_one_line(stack: Stack) -> None:
    """``logs`` against the Temporal UI's port printed a JSONDecodeError traceback; the
    others said "Expecting value: line 1 column 1 (char 0)"."""
    with html_server() as url:
        for args in (("runs", "list"), ("runs", "get", "run_x"), ("logs", "run_x")):
            out = runyard(stack, *args, "--api-url", url, key="ry_live_whatever")
            assert out.returncode == 1, (args, out.stderr)
            assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
            assert "NOT_RUNYARD_API" in out.stderr and f"is {url} the Runyard API" in out.stderr


async def test_run_resolves_a_relative_repo_path(stack: Stack, keys: Keys, tmp_path: Path) -> None:
    """`--repo .` and `--repo ../x` name directories here, not owner/name slugs: the CLI
    sends the absolute path, which the API finds (or reports missing under that path)."""
    key = await keys.make("cli-repo")
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "README.md").write_text("# here\n")
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(project),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "init",
        ],
        check=True,
    )
    env = {**stack.env, "RUNYARD_API_URL": stack.api_url, "RUNYARD_API_KEY": key}

    def run_in_project(repo: str, *more: str, prompt: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "run",
                prompt or script({"text": "ok"}),
                "--model",
                "scripted",
                "--repo",
                repo,
                *more,
            ],
            env=env | {"PYTHONPATH": str(ROOT)},
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = run_in_project(".")
    assert created.returncode == 0, created.stderr
    got = runyard(stack, "runs", "get", created.stdout.strip(), key=key)
    assert json.loads(got.stdout)["repo"] == str(project.resolve())
    missing = run_in_project("../nope")
    assert missing.returncode == 1 and "REPOSITORY_NOT_FOUND" in missing.stderr
    assert str(project.parent.resolve() / "nope") in missing.stderr
    # A folder that is there but is no git repository is said to be just that.
    (tmp_path / "plain").mkdir()
    plain = run_in_project("../plain")
    assert plain.returncode == 1 and "REPOSITORY_NOT_FOUND" in plain.stderr, plain.stderr
    assert "is a directory but not a git repository" in plain.stderr, plain.stderr
    # `--follow` shows each output once: live, not again before the status line.
    edit = script({"tool": "bash", "input": {"command": "echo new > new.txt"}}, {"text": "ok"})
    followed = run_in_project(".", "--follow", prompt=edit)
    assert followed.returncode == 0, followed.stderr
    assert followed.stderr.count('"type": "patch"') == 1, followed.stderr
    # The example resolves a relative path as the CLI does (it was refused: "a local
    # repository must be an absolute path").
    argv = [str(ROOT / "examples" / "run_on_repo.py"), ".", script({"text": "ok"})]
    example = subprocess.run(
        [sys.executable, *argv, "--model", "scripted"],
        env=env | {"PYTHONPATH": str(ROOT)},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert example.returncode == 0, example.stderr


# What an outside probe got through to the terminal: an OSC 52 clipboard write, a line
# rewound (lone CR) and overwritten with a forged end of run, a C1 CSI, a bidi override.
HOSTILE = "\x1b]52;c;cHduZWQ=\x07\r\x1b[2K● completed · 9 turns\x9b2J\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def assert_inert(text: str, what: str) -> None:
    for char in RAW:
        assert char not in text, (what, char, text)
    assert "\r" not in text.replace("\r\n", "\n"), (what, text)


async def test_run_data_reaches_the_terminal_inert(stack: Stack, keys: Keys) -> None:
    """Agent text, questions, tool output, answers and errors: every control character a
    terminal acts on is shown as its escape, in a terminal, in a pipe, as JSON."""
    key = await keys.make("cli-escapes")
    printf = "printf '\\033]52;c;cHduZWQ=\\007\\r\\033[2Kforged\\302\\233\\342\\200\\256x\\n'"
    prompt = script(
        {"tool": "bash", "input": {"command": printf, "note": HOSTILE}},
        {"ask": f"Which? {HOSTILE}"},
        {"text": f"Final {HOSTILE}\nline two"},
    )
    started = runyard(stack, "run", prompt, "--model", "scripted", key=key)
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    child = spawn(stack, key, "follow", run_id, "--verbose")
    child.logfile_read = transcript = io.StringIO()
    child.expect("answer")  # the question is shown, the prompt waits
    # Answered elsewhere (typed here, the terminal would echo the keys themselves).
    env = {**stack.env, "RUNYARD_API_URL": stack.api_url, "RUNYARD_API_KEY": key}
    answered = subprocess.run(
        [sys.executable, "-m", "cli", "answer", run_id, "-"],
        input=f"yes {HOSTILE}",
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answered.returncode == 0, answered.stderr
    child.expect(r"completed · 3 turns")
    child.expect(pexpect.EOF)
    child.close()
    shown = transcript.getvalue()
    # Rich's own styling is ESC sequences: only the data's controls must be gone.
    data_only = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\\\)?", "", shown)
    assert "\\x1b]52;c;cHduZWQ=\\x07\\x0d\\x1b[2K● completed · 9 turns\\x9b2J\\u202eevil" in shown
    assert "cHduZWQ=\x07" not in shown and "\x9b" not in shown and "\u202e" not in shown
    # The tool's output (a CR splits its lines there).
    assert "│ \\x1b[2Kforged\\x9b\\u202ex" in data_only, data_only
    assert "\r\x1b[2K●" not in shown
    piped = runyard(stack, "follow", run_id, key=key)
    assert piped.returncode == 0, piped.stderr
    assert_inert(piped.stdout + piped.stderr, "follow, piped")
    assert piped.stdout.startswith("Final \\x1b]52;")
    for args in (("logs", run_id), ("runs", "get", run_id), ("runs", "list")):
        out = runyard(stack, *args, key=key)
        assert out.returncode == 0, out.stderr
        assert_inert(out.stdout, " ".join(args))
    logs = [
        json.loads(line)
        for line in runyard(stack, "logs", run_id, key=key).stdout.split("\n")
        if line
    ]
    answers = [e["data"]["content"] for e in logs if e["type"] == "run.input_received"]
    assert answers == [f"yes {HOSTILE}"]  # JSON: escaped, the same data

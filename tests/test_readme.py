"""The README is a tested manual: every `curl` and `keyvault` example in it (all but `serve` and
`db restore`) sits in a block marked as tested, and each such block runs as written, from a
fresh clone's point of view, against a real `keyvault serve`, with its placeholders filled in.
A curl that gets a 4xx or 5xx, or a command that exits non-zero, fails the test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

from keyvault import clock
from tests.conftest import PROJECT_ROOT, TEST_PEPPER, TEST_SECRET_KEY

README = PROJECT_ROOT / "README.md"
MARK = "<!-- tested: tests/test_readme.py runs this block"
SHELLS = {"bash", "sh", "shell", "console"}
# A command word `curl` or `keyvault` (bare, or as .venv/bin/keyvault), not in a comment.
COMMAND = re.compile(r"(?:^|[\s|;&(=])(?:\S*/)?(curl|keyvault)\s")
BARE_KEYVAULT = re.compile(r"(?:^|[\s|;&(=])keyvault\s")
NOT_RUN = re.compile(r"keyvault serve\b|keyvault db restore\b")  # they stop or take the server
PASSWORD = "a reader's long password"


class Block(NamedTuple):
    line: int  # where its fence opens in README.md
    heading: str
    lang: str
    text: str
    tested: bool


def blocks(markdown: str) -> list[Block]:
    found, heading, opened, lang, body, previous = [], "", None, "", [], ""
    for number, line in enumerate(markdown.splitlines(), 1):
        if opened is None and line.startswith("```"):
            opened, lang, body = number, line[3:].strip(), []
            tested = previous.startswith(MARK)
        elif opened is not None and line.startswith("```"):
            found.append(Block(opened, heading, lang, "\n".join(body) + "\n", tested))
            opened, previous = None, line
        elif opened is not None:
            body.append(line)
        else:
            if line.startswith("#"):
                heading = line.lstrip("#").strip()
            if line.strip():
                previous = line
    return found


def commands(block: Block) -> list[str]:
    """The shell lines of a block that run curl or keyvault (continuations joined, comments cut)."""
    if block.lang not in SHELLS:
        return []
    joined = block.text.replace("\\\n", " ")
    lines = [re.sub(r"(^|\s)#.*$", "", line) for line in joined.splitlines()]
    return [line.strip() for line in lines if COMMAND.search(line)]


BLOCKS = blocks(README.read_text())
TESTED = [block for block in BLOCKS if block.tested]


def test_every_curl_and_keyvault_example_is_in_a_tested_block():
    untested = [f"README.md:{block.line} ({block.heading}): {command}"
                for block in BLOCKS if not block.tested
                for command in commands(block) if not NOT_RUN.search(command)]
    assert untested == []
    assert all(block.lang in SHELLS and commands(block) for block in TESTED)
    assert len(TESTED) >= 8


def test_examples_run_keyvault_as_a_fresh_clone_can():
    """`keyvault` alone is "command not found" after `make run`: examples say .venv/bin/keyvault."""
    bare = [f"README.md:{block.line}: {command}" for block in BLOCKS
            for command in commands(block) if BARE_KEYVAULT.search(command)]
    assert bare == []


def anchor(title: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_contents_lists_every_section_in_order():
    text = README.read_text()
    contents = text[text.index("## Contents"):text.index("## Quick start")]
    listed = re.findall(r"^( *)- \[(.+?)\]\(#(.+?)\)$", contents, re.M)
    outside_code = re.sub(r"```.*?```", "", text[text.index("## Quick start"):], flags=re.S)
    headings = re.findall(r"^(##|###) (.+)$", outside_code, re.M)
    assert [(indent == "", title, target) for indent, title, target in listed] == [
        (level == "##", title, anchor(title)) for level, title in headings]


def test_development_internals_live_in_contributing():
    """The manual is for people who run KeyVault; how its tests and CI work is in CONTRIBUTING.md."""
    readme, contributing = README.read_text(), (PROJECT_ROOT / "CONTRIBUTING.md").read_text()
    for internal in ("SCREENS", ".ci/run", "Playwright", "axe", "make bench"):
        assert internal not in readme
        assert internal in contributing
    quick_start = readme[readme.index("## Quick start"):readme.index("## Configuration")]
    assert "make run " in quick_start and "make test " in quick_start  # the two commands


# ---------------------------------------------------------------- the blocks, run for real


class World(NamedTuple):
    caller: str  # $KEY: full access, expiring in 30 days as the settings page makes keys
    subject_id: str  # KEY_ID: a key the caller may read, edit, roll and revoke
    subject: str
    service: str  # $SERVICE_KEY: key:verify


def filled(block: Block, world: World, url: str, database_url: str) -> str:
    """The block as the reader runs it, with their own values in place of the placeholders."""
    text = block.text.replace("http://localhost:5000", url)
    text = re.sub(r"^export KEY=kv_\.\.\.", f"export KEY={world.caller}", text, flags=re.M)
    text = re.sub(r"(?<=/)KEY_ID(?=/)|(?<=key=)KEY_ID", world.subject_id, text)
    text = text.replace("kv_the_key_your_user_sent", world.subject)
    text = text.replace("export KEYVAULT_SECRET_KEY=...", f"export KEYVAULT_SECRET_KEY={TEST_SECRET_KEY}")
    text = text.replace("export KEYVAULT_KEY_PEPPER=...", f"export KEYVAULT_KEY_PEPPER={TEST_PEPPER}")
    text = re.sub(r"^export KEYVAULT_DATABASE_URL=\S+", f"export KEYVAULT_DATABASE_URL='{database_url}'",
                  text, flags=re.M)
    text = text.replace("/etc/prometheus/", "./").replace("/backups/", "./")
    lines = text.replace("\\\n", "\0").splitlines()
    return "\n".join(line for line in lines if not NOT_RUN.search(line)).replace("\0", "\\\n")


def without_keyvault_on_path() -> str:
    """PATH as after `make run` in a new shell: .venv/bin is not on it."""
    return os.pathsep.join(entry for entry in os.environ["PATH"].split(os.pathsep)
                           if not (Path(entry) / "keyvault").exists())


@pytest.mark.parametrize("block", TESTED, ids=[f"line{b.line}-{b.heading}" for b in TESTED])
def test_readme_block_runs_as_written(block, live_server, database_url, make_user, make_key,
                                      tmp_path):
    assert shutil.which("curl") and shutil.which("jq"), "apt-get install -y curl jq"
    reader = make_user("reader@example.com")
    now = clock.now()
    _, caller = make_key(reader, label="my laptop", scopes=["*"],
                         expires_at=now + timedelta(days=30))
    subject_key, subject = make_key(reader, label="deploy bot", scopes=["key:verify"],
                                    expires_at=now + timedelta(days=7))
    _, service_key = make_key(reader, label="flags service", scopes=["key:verify"])
    world = World(caller, subject_key.public_id, subject, service_key)
    (tmp_path / ".venv").symlink_to(PROJECT_ROOT / ".venv")  # the reader's clone, after make run
    (tmp_path / ".env").write_text("DEBUG=1\n")  # a file for `keys scan` to search
    script = ('set -euo pipefail\n'
              'curl() { command curl --fail-with-body --show-error "$@"; }\n'
              + filled(block, world, live_server.url, database_url))
    env = {**os.environ, "PATH": without_keyvault_on_path(), "KV": live_server.url,
           "KEY": caller, "SERVICE_KEY": service_key, "PASSWORD": PASSWORD,
           "KEYVAULT_DATABASE_URL": database_url, "KEYVAULT_SECRET_KEY": TEST_SECRET_KEY,
           "KEYVAULT_KEY_PEPPER": TEST_PEPPER}
    # A session of its own: no terminal, so a password prompt reads the two lines given here.
    run = subprocess.run(["bash", "-c", script], input=f"{PASSWORD}\n{PASSWORD}\n", env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         start_new_session=True)
    report = f"README.md:{block.line}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    if "db backup" in block.text and not database_url.startswith("sqlite"):
        # As the README says: on PostgreSQL, backup refuses and points to pg_dump.
        assert run.returncode == 1, report
        assert "pg_dump" in run.stderr, report
        return
    assert run.returncode == 0, report
    assert "Traceback" not in run.stderr, report
    if "/api/users/@me/" in block.text:
        assert '"email":' in run.stdout, report

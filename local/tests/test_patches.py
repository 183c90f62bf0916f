"""The registry of the replica's moto patches (no stack needed): every target exists in the installed
moto, a missing one fails loudly by name, and local/README.md's table names exactly the registered targets."""

from __future__ import annotations

import os
import re

import pytest

from conftest import REPO
from batchless_local import patches
from batchless_local.patches import Group, Patch

README = os.path.join(REPO, "local", "README.md")


def _current(target: str):
    return getattr(patches.owner_of(target), target.rsplit(".", 1)[1])


def test_every_registered_target_exists_and_applying_twice_changes_nothing():
    registered = patches.registered()
    assert len({p.target for p in registered}) == len(registered), "a target is registered twice"
    patches.apply()
    applied = {p.target: _current(p.target) for p in registered}
    for p in registered:
        original, replacement = patches._applied[p.target]
        assert applied[p.target] is replacement, p.target
        assert original is not replacement, p.target
        if p.wraps:
            assert callable(original), p.target
    patches.apply()
    assert {p.target: _current(p.target) for p in registered} == applied  # the same objects: not wrapped again


def test_a_target_moto_does_not_have_fails_naming_it_and_nothing_is_patched():
    real = "moto.codebuild.responses.CodeBuildResponse.list_builds"
    before = _current(real)
    fake = (
        Group(lambda originals: {"list_builds": object()}, (Patch(real, "a real target"),)),
        Group(lambda originals: {"no_such_handler": object()},
              (Patch("moto.codebuild.responses.CodeBuildResponse.no_such_handler", "a fake row"),)),
        Group(lambda originals: {"thing": object()},
              (Patch("moto.no_such_service.models.Backend.thing", "another fake row"),)),
        Group(lambda originals: {"__version__": object()}, (Patch("moto.__version__", "not callable", wraps=True),)),
        Group(lambda originals: {"stop_build": object()},
              (Patch("moto.codebuild.responses.CodeBuildResponse.stop_build", "added, but moto has it", adds=True),)),
    )
    with pytest.raises(patches.PatchTargetMissing) as err:
        patches.apply(fake)
    message = str(err.value)
    for line in ("moto.codebuild.responses.CodeBuildResponse.no_such_handler "
                 "(moto.codebuild.responses.CodeBuildResponse has no no_such_handler; README row \"a fake row\")",
                 "moto.no_such_service.models.Backend.thing (moto has no no_such_service",
                 "moto.__version__ (not callable",
                 "moto.codebuild.responses.CodeBuildResponse.stop_build (moto.codebuild.responses.CodeBuildResponse "
                 "has stop_build now"):
        assert line in message
    assert real not in message
    assert _current(real) is before  # all or nothing


def _table() -> list[tuple[str, list[str]]]:
    """(patch cell, targets named in the where cell) per row of the "moto gaps closed" table."""
    text = open(README).read()
    section = text.split("\n## moto gaps closed (what is patched)\n", 1)[1].split("\n#", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[:2] == ["| patch | where |", "| --- | --- |"], lines[:2]
    rows = []
    for line in lines[2:]:
        cells = line.strip()[1:-1].split(" | ")
        assert len(cells) == 2, line
        targets = []
        for span in re.findall(r"`([^`]+)`", cells[1]):
            owner, _, names = span.rpartition(".")
            targets += [f"{owner}.{name}" for name in names.split("/")]
        rows.append((cells[0].strip(), targets))
    return rows


def test_readme_table_names_exactly_the_registered_targets_in_their_rows():
    rows = _table()
    documented = [t for _, targets in rows for t in targets]
    assert len(set(documented)) == len(documented), "a target is documented twice"
    registered = {p.target: p for p in patches.registered()}
    assert sorted(set(documented) - set(registered)) == [], "documented in local/README.md, not registered"
    assert sorted(set(registered) - set(documented)) == [], "registered, not in local/README.md's table"
    for cell, targets in rows:
        for t in targets:
            assert cell.startswith(registered[t].row), f"{t} is documented in the row {cell[:60]!r}, " \
                                                       f"registered for the row {registered[t].row!r}"

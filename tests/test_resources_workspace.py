"""Resource names, and the confinement of file tools to the workspace folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resources_support import call, context, ok, open_runtime
from wakeful.core.resources import Resource
from wakeful.errors import ConfigError
from wakeful.project.loader import load_project
from wakeful.resources import PathEscapeError, ResourceError, ResourceManager, Workspace


def test_names_are_parsed_and_made_canonical(tmp_path: Path) -> None:
    manager = ResourceManager(tmp_path / "ws")
    (tmp_path / "ws" / "docs").mkdir(parents=True)
    assert str(manager.parse("file:docs/./plan.md")) == "file:docs/plan.md"
    assert str(manager.parse("file:.")) == "file:."
    assert str(manager.parse("kv:plan")) == "kv:plan"
    assert str(manager.parse("custom:printer-2")) == "custom:printer-2"
    with pytest.raises(ResourceError, match="not of the form kind:name"):
        manager.parse("plan.md")
    with pytest.raises(ResourceError, match=r"unknown kind 'disk' \(known kinds: custom, file"):
        manager.parse("disk:x")
    with pytest.raises(ResourceError, match="the name must be"):
        manager.parse("kv:has space")


def test_file_resources_nest_other_kinds_do_not() -> None:
    docs, plan = Resource("file", "docs", True), Resource("file", "docs/plan.md", True)
    root, sibling = Resource("file", ".", True), Resource("file", "docsx", True)
    assert docs.covers(plan) and not plan.covers(docs) and plan.overlaps(docs)
    assert root.covers(plan) and root.covers(docs)
    assert not docs.overlaps(sibling)
    assert not Resource("kv", "a").overlaps(Resource("kv", "a/b"))
    assert Resource("kv", "a").overlaps(Resource("kv", "a"))


def test_workspace_refuses_every_way_out(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("do not read")
    root.mkdir()
    (root / "inside.md").write_text("fine")
    os.symlink(outside / "key.txt", root / "link-to-file")
    os.symlink(outside, root / "link-to-dir")
    os.symlink(root / "inside.md", root / "alias.md")
    workspace = Workspace(root)
    for path, reason in [
        ("../secret/key.txt", "contains '..'"),
        ("docs/../../secret/key.txt", "contains '..'"),
        ("..", "contains '..'"),
        (str(outside / "key.txt"), "is absolute"),
        ("/etc/passwd", "is absolute"),
        ("~/.ssh/id_rsa", "is absolute"),
        ("link-to-file", "through a symbolic link"),
        ("link-to-dir/key.txt", "through a symbolic link"),
        ("link-to-dir/new.txt", "through a symbolic link"),
        ("bad\x00name", "NUL"),
    ]:
        with pytest.raises(PathEscapeError, match=reason):
            workspace.resolve(path)
    with pytest.raises(ResourceError, match="path is empty"):
        workspace.resolve(" ")
    assert workspace.canonical("alias.md") == "inside.md"  # one file, one resource
    assert workspace.canonical("./new/dir/file.txt") == "new/dir/file.txt"
    assert workspace.canonical(".") == "."


async def test_file_tools_refuse_escapes_and_touch_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("original")
    async with open_runtime(tmp_path) as runtime:
        workspace = tmp_path / "workspace"
        os.symlink(tmp_path, workspace / "up")
        ctx = context(runtime, "t_1")
        for tool, args in [
            ("write_file", {"path": "../outside.txt", "content": "pwned"}),
            ("append_file", {"path": str(outside), "text": "pwned"}),
            ("edit_file", {"path": "up/outside.txt", "old": "original", "new": "pwned"}),
            ("read_file", {"path": "up/outside.txt"}),
            ("list_files", {"path": "up"}),
        ]:
            outcome = await call(runtime, ctx, tool, **args)
            assert not outcome.ok, (tool, outcome.content)
            assert outcome.content.startswith(f"error: tool '{tool}': path ")
            assert any(word in outcome.content for word in ("'..'", "absolute", "symbolic"))
        assert outside.read_text() == "original"
        # and the ordinary way in still works
        assert await ok(runtime, ctx, "write_file", path="docs/a.md", content="# A") == (
            "wrote 3 characters to docs/a.md")
        assert await ok(runtime, ctx, "list_files") == ["docs/", "up/"]
        assert await ok(runtime, ctx, "read_file", path="docs/a.md") == "# A"
        assert await ok(runtime, ctx, "edit_file", path="docs/a.md", old="A", new="B") == (
            "edited docs/a.md")
        outcome = await call(runtime, ctx, "edit_file", path="docs/a.md", old="zzz", new="y")
        assert "does not appear in docs/a.md" in outcome.content
        outcome = await call(runtime, ctx, "read_file", path="missing.md")
        assert "no file missing.md in the workspace" in outcome.content


async def test_file_tools_without_a_workspace_say_so(tmp_path: Path) -> None:
    from wakeful.models.registry import ModelRegistry
    from wakeful.runtime.runtime import Runtime
    from wakeful.store.sqlite import SQLiteStore

    runtime = Runtime(store=SQLiteStore(tmp_path / "w.db"), models=ModelRegistry(tmp_path))
    async with runtime:
        outcome = await call(runtime, context(runtime, "t_1"), "read_file", path="a.md")
        assert not outcome.ok and "need a workspace folder" in outcome.content
        assert (await call(runtime, context(runtime, "t_1"), "kv_set", key="k", value=1)).ok


def test_workspace_is_configured_in_wakeful_yaml(tmp_path: Path) -> None:
    (tmp_path / "wakeful.yaml").write_text("name: p\n")
    assert load_project(tmp_path).workspace_path == tmp_path / "workspace"
    (tmp_path / "wakeful.yaml").write_text(
        "name: p\nworkspace: shared/files\nresources: {auto_pause_timeout_s: 5}\n")
    project = load_project(tmp_path)
    assert project.workspace_path == tmp_path / "shared" / "files"
    assert project.config.resources.auto_pause_timeout_s == 5
    (tmp_path / "wakeful.yaml").write_text("name: p\nresources: {auto_pause_timeout: 5}\n")
    with pytest.raises(ConfigError, match=r"resources\.auto_pause_timeout"):
        load_project(tmp_path)
    (tmp_path / "wakeful.yaml").write_text(
        "name: p\nresources: {default_lease_s: 100, max_lease_s: 10}\n")
    with pytest.raises(ConfigError, match="default_lease_s"):
        load_project(tmp_path)

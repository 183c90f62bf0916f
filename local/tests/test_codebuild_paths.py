"""CodeBuild artifact paths as the replica resolves them (pure)."""

from __future__ import annotations

from batchless_local.codebuild import artifact_prefix, expand_vars, glob_regex


def test_file_globs():
    def m(pattern, path):
        return bool(glob_regex(pattern).match(path))

    assert m("**/*", "a.txt") and m("**/*", "sub/dir/b.sql")
    assert m("*.txt", "a.txt") and not m("*.txt", "sub/a.txt")
    assert m("db/**/*.sql", "db/x.sql") and m("db/**/*.sql", "db/a/b/x.sql") and not m("db/**/*.sql", "dbx/x.sql")
    assert m("./out/*", "out/a") and not m("out/*", "out/a/b")
    assert m("report-?.json", "report-1.json") and not m("report-?.json", "report-10.json")


def test_base_directory_variables_expand_like_codebuild():
    env = {"CODEBUILD_SRC_DIR": "/src", "OUT": "out"}
    assert expand_vars("$CODEBUILD_SRC_DIR/${OUT}/x", env) == "/src/out/x"
    assert expand_vars("$UNSET/out", env) == "/out"


def test_key_prefix_skips_empty_parts():
    assert artifact_prefix({"path": "patches/p1", "name": "output"}, "u") == "patches/p1/output"
    assert artifact_prefix({"path": "/patches/", "name": "/"}, "u") == "patches"
    assert artifact_prefix({"name": "output"}, "u") == "output"
    assert artifact_prefix({}, "u") == ""
    assert artifact_prefix({"path": "p", "name": "n", "namespaceType": "BUILD_ID"}, "u") == "p/u/n"

"""CloudWatch Logs subscription filter patterns as the replica applies them (pure)."""

from __future__ import annotations

from batchless_local.logs import matches


def test_empty_pattern_selects_everything():
    assert matches("", "anything")
    assert matches('""', "anything")


def test_terms_follow_cloudwatch_rules():
    hook = '{"batchless":"console-command","v":1}'
    assert matches('"console-command"', hook)
    assert not matches('"console-command"', 'Started GET "/health"')
    assert matches("ERROR timeout", "ERROR: upstream timeout")
    assert not matches("ERROR timeout", "ERROR: refused")
    assert matches("?ERROR ?WARN", "WARN: slow")
    assert not matches("?ERROR ?WARN", "INFO: ok")
    assert not matches("ERROR -health", "ERROR in health check")


def test_structured_patterns_are_not_evaluated():
    assert matches("{ $.level = \"error\" }", "anything")
    assert matches("[ip, user, ...]", "anything")

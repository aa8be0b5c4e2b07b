"""An ImageUpdateAutomation's spec: what it accepts, and what stalls naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.image.automationspec import ImageUpdateAutomationSpec
from controllers.toolkit.runtime.frame import ReconcileError


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "interval": "5m",
        "sourceRef": {"kind": "GitRepository", "name": "app"},
        "git": {"commit": {"author": {"email": "bot@example.com"}}},
    }
    base.update(overrides)
    return base


def test_defaults_follow_flux() -> None:
    parsed = ImageUpdateAutomationSpec.parse(spec())
    assert parsed.update_path == "."
    assert parsed.push_branch is None and parsed.checkout_ref is None
    assert parsed.selector.empty
    assert parsed.message_template is None


def test_policy_selector_with_expressions() -> None:
    parsed = ImageUpdateAutomationSpec.parse(
        spec(
            policySelector={
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
            }
        )
    )
    assert parsed.selector.matches({"app": "web", "tier": "a"})
    assert not parsed.selector.matches({"app": "web", "tier": "c"})
    assert not parsed.selector.matches({"tier": "a"})


@pytest.mark.parametrize(
    ("overrides", "reason", "says"),
    [
        (
            {"policySelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
            "InvalidPolicySelector",
            "operator 'Near'",
        ),
        (
            {"git": {"commit": {"author": {"email": "a@b"}, "signingKey": {"type": "ssh"}}}},
            "UnsupportedField",
            "signingKey.type 'ssh'",
        ),
        (
            {
                "git": {
                    "commit": {
                        "author": {"email": "a@b"},
                        "messageTemplate": "{{ if .X }}{{ end }}",
                    }
                }
            },
            "UpdateFailed",
            "'if'",
        ),
        (
            {"git": {"commit": {"author": {"email": "a@b"}}, "push": {"refspec": "+a:b"}}},
            "InvalidSourceConfiguration",
            "refspec",
        ),
        (
            {"git": {"commit": {"author": {"email": "a@b"}}, "push": {"branch": "bad..name"}}},
            "InvalidSourceConfiguration",
            "bad..name",
        ),
        (
            {"sourceRef": {"kind": "OCIRepository", "name": "x"}},
            "InvalidSourceConfiguration",
            "only GitRepository",
        ),
    ],
)
def test_what_cannot_work_stalls_naming_it(
    overrides: dict[str, Any], reason: str, says: str
) -> None:
    with pytest.raises(ReconcileError) as info:
        ImageUpdateAutomationSpec.parse(spec(**overrides))
    assert info.value.stalled
    assert info.value.reason == reason
    assert says in info.value.message

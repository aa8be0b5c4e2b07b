"""Commit messages from Flux's template data."""

from __future__ import annotations

import pytest

from controllers.image.setters import Change, ObjectId, Result
from controllers.image.template import AutomationName, TemplateError, render_message

AUTOMATION = AutomationName("apps", "auto")


def changed() -> Result:
    result = Result()
    result.add(
        "apps/web.yaml",
        ObjectId("Deployment", "web", "apps", "apps/v1"),
        Change("a:1", "a:2", "apps:a"),
    )
    result.add(
        "apps/api.yaml",
        ObjectId("Deployment", "api", "apps", "apps/v1"),
        Change("b:1", "b:2", "apps:b"),
    )
    return result


def test_default_message_lists_files_objects_and_changes() -> None:
    message = render_message(None, AUTOMATION, changed(), {})
    assert message == (
        "Automated image update\n\nAutomation name: apps/auto\n\n"
        "Files:\n- apps/api.yaml\n- apps/web.yaml\n"
        "Objects:\n- Deployment api\n  Changes:\n    - b:1 -> b:2\n"
        "- Deployment web\n  Changes:\n    - a:1 -> a:2\n"
    )


def test_flux_documented_examples_render() -> None:
    assert (
        render_message(
            "{{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}",
            AUTOMATION,
            changed(),
            {},
        )
        == "a:1 -> a:2\nb:1 -> b:2\n"
    )
    assert (
        render_message(
            "Update {{ .Values.cluster }} by {{ .AutomationObject.Name }} in "
            "{{ .AutomationObject.Namespace }}",
            AUTOMATION,
            changed(),
            {"cluster": "prod"},
        )
        == "Update prod by auto in apps"
    )


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("{{ if .Changed }}x{{ end }}", "'if'"),
        ("{{ .AutomationObject | lower }}", "pipe"),
        ('{{ printf "%s" .AutomationObject }}', "'printf'"),
        ("{{ range .Updated.Images }}{{ end }}", ".Updated"),
        ("{{ range .Changed.Changes }}", "without {{ end }}"),
    ],
)
def test_constructs_not_interpreted_are_refused_by_name(template: str, named: str) -> None:
    with pytest.raises(
        TemplateError, match=named.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")
    ):
        render_message(template, AUTOMATION, changed(), {})


def test_a_missing_value_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(TemplateError, match="'cluster'"):
        render_message("{{ .Values.cluster }}", AUTOMATION, changed(), {})

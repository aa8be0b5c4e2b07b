"""Refusing fields headwater does not implement, by name."""

from __future__ import annotations

import pytest

from controllers.toolkit.runtime.fields import refuse_unsupported, unsupported_in
from controllers.toolkit.runtime.frame import ReconcileError

UNSUPPORTED = {"spec.decryption.serviceAccountName": "sops only", "spec.sops": "no sops"}


def test_a_set_field_is_named_and_stalls() -> None:
    obj = {"spec": {"decryption": {"serviceAccountName": "kms"}}}
    with pytest.raises(ReconcileError) as caught:
        refuse_unsupported(obj, UNSUPPORTED)
    assert caught.value.stalled
    assert "spec.decryption.serviceAccountName is not supported" in caught.value.message


def test_unset_and_null_fields_pass() -> None:
    assert unsupported_in({"spec": {"decryption": {}}}, UNSUPPORTED) == []
    assert unsupported_in({"spec": {"sops": None}}, UNSUPPORTED) == []
    refuse_unsupported({"spec": {}}, UNSUPPORTED)


def test_a_field_of_list_items_is_found_in_any_item() -> None:
    refused = {"spec.resources.filter": "no CEL"}
    obj = {"spec": {"resources": [{"name": "a"}, {"name": "b", "filter": "true"}]}}
    assert unsupported_in(obj, refused) == [
        "spec.resources.filter is not supported by headwater: no CEL"
    ]
    assert unsupported_in({"spec": {"resources": [{"filter": None}]}}, refused) == []
    assert unsupported_in({"spec": {"resources": []}}, refused) == []

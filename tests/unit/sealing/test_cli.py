"""`headwater seal` and `headwater keys recover` offline: a cert and key files, no cluster."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from controllers import cli
from controllers.sealing import format as sealing
from controllers.sealing import keys as sealing_keys
from tests.support.cluster import kubeconfig_yaml

DATA = Path(__file__).parent / "data" / "sealing"
KEY = DATA / "key.pem"
CERT = DATA / "cert.pem"
PLAINTEXT = "tr0ub4dor-and-3"


@pytest.fixture(autouse=True)
def no_kubeconfig(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No cluster: the namespace fallback must come from the (absent) context.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent-kubeconfig"))


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: bytes = b"",
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _secret_yaml(namespace: str | None = "app") -> bytes:
    metadata: dict[str, Any] = {"name": "db"}
    if namespace:
        metadata["namespace"] = namespace
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata}
    secret["stringData"] = {"password": PLAINTEXT}
    return yaml.safe_dump(secret).encode()


def _golden_keys() -> list[Any]:
    keys = sealing_keys.parse_key_file(KEY.read_bytes(), source="key.pem")
    return sealing_keys.private_keys(keys)


def test_seal_and_recover_round_trip(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, err = run(capsys, monkeypatch, "seal", "--cert", str(CERT), stdin=_secret_yaml())
    assert (code, err) == (0, "")
    sealed = yaml.safe_load(out)
    assert sealed["kind"] == "SealedSecret"
    assert PLAINTEXT not in out
    opened = sealing.unseal_sealed_secret(sealed, _golden_keys())
    assert base64.b64decode(opened["data"]["password"]).decode() == PLAINTEXT

    sealed_file = tmp_path / "sealed.json"
    sealed_file.write_text(json.dumps(sealed))
    code, out, err = run(
        capsys,
        monkeypatch,
        "keys",
        "recover",
        "--key",
        str(KEY),
        "-f",
        str(sealed_file),
        "-o",
        "json",
    )
    assert (code, err) == (0, "")
    secret = json.loads(out)
    assert base64.b64decode(secret["data"]["password"]).decode() == PLAINTEXT


def test_seal_writes_file_in_format_of_its_extension(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "secret.yaml"
    source.write_bytes(_secret_yaml())
    target = tmp_path / "sealed.json"
    code, out, _ = run(
        capsys, monkeypatch, "seal", "--cert", str(CERT), "-f", str(source), "-w", str(target)
    )
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["metadata"] == {"name": "db", "namespace": "app"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_namespace_falls_back_to_context_then_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, _ = run(
        capsys, monkeypatch, "seal", "--cert", str(CERT), stdin=_secret_yaml(namespace=None)
    )
    assert code == 0
    assert yaml.safe_load(out)["metadata"]["namespace"] == "default"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [
                    {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ctx-ns"}}
                ],
                "current-context": "x",
            }
        )
    )
    code, out, _ = run(
        capsys,
        monkeypatch,
        "seal",
        "--cert",
        str(CERT),
        "--kubeconfig",
        str(kubeconfig),
        stdin=_secret_yaml(namespace=None),
    )
    assert code == 0
    assert yaml.safe_load(out)["metadata"]["namespace"] == "ctx-ns"


def test_namespace_mismatch_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(
        capsys,
        monkeypatch,
        "seal",
        "--cert",
        str(CERT),
        "--namespace",
        "other",
        stdin=_secret_yaml(),
    )
    assert code == 1 and out == ""
    assert "namespace mismatch" in err


@pytest.mark.parametrize("scope", [scope.value for scope in sealing.Scope])
def test_raw_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    code, out, err = run(
        capsys,
        monkeypatch,
        "seal",
        "--raw",
        "--cert",
        str(CERT),
        "--scope",
        scope,
        "--name",
        "db",
        "--namespace",
        "app",
        stdin=PLAINTEXT.encode(),
    )
    assert (code, err) == (0, "")
    assert not out.endswith("\n")  # as kubeseal: ready to paste into YAML
    value = sealing.unseal_value(
        _golden_keys(), out, namespace="app", name="db", scope=sealing.Scope(scope)
    )
    assert value.decode() == PLAINTEXT


def test_raw_from_file_and_usage_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    value = tmp_path / "password.txt"
    value.write_text(PLAINTEXT)
    code, out, _ = run(
        capsys,
        monkeypatch,
        "seal",
        "--raw",
        "--cert",
        str(CERT),
        "--name",
        "db",
        "--namespace",
        "app",
        "--from-file",
        f"password={value}",
    )
    assert code == 0
    opened = sealing.unseal_value(
        _golden_keys(), out, namespace="app", name="db", scope=sealing.Scope.STRICT
    )
    assert opened.decode() == PLAINTEXT

    code, _, err = run(capsys, monkeypatch, "seal", "--raw", "--cert", str(CERT))
    assert code == 2 and "--name" in err
    code, _, err = run(capsys, monkeypatch, "seal", "--cert", str(CERT), "--from-file", str(value))
    assert code == 2 and "--from-file requires --raw" in err


def test_fetch_cert_from_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, monkeypatch, "seal", "--fetch-cert", "--cert", str(CERT))
    assert code == 0 and out == CERT.read_text()


@pytest.mark.parametrize(
    "document",
    [
        # A YAML error on the line holding the value: PyYAML's own message would quote it.
        f"kind: Secret\nmetadata: {{name: db}}\nstringData:\n  password: {PLAINTEXT}: x\n",
        f"stringData:\n  password: *{PLAINTEXT}\n",
        f'{{"kind": "Secret", "stringData": {{"password": "{PLAINTEXT}"}} oops',
    ],
)
def test_input_errors_never_echo_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, document: str
) -> None:
    code, out, err = run(capsys, monkeypatch, "seal", "--cert", str(CERT), stdin=document.encode())
    assert code == 1 and out == ""
    assert "stdin: invalid" in err and "line" in err
    assert PLAINTEXT not in err


def test_recover_with_wrong_key_names_object_not_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, monkeypatch, "seal", "--cert", str(CERT), stdin=_secret_yaml())
    assert code == 0
    sealed = tmp_path / "sealed.yaml"
    sealed.write_text(out)
    private_key, certificate = sealing_keys.generate_key(key_size=2048)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(sealing_keys.key_secret("hw", private_key, certificate)))
    code, out, err = run(
        capsys, monkeypatch, "keys", "unseal", "--key", str(other), "-f", str(sealed)
    )
    assert code == 1 and out == ""
    assert "SealedSecret app/db: cannot unseal password" in err
    assert PLAINTEXT not in err


def test_expired_or_missing_certificate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, _, err = run(capsys, monkeypatch, "seal", "--cert", str(tmp_path / "nope.pem"))
    assert code == 1 and "cannot read certificate" in err
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    code, _, err = run(capsys, monkeypatch, "seal", "--cert", str(junk), stdin=_secret_yaml())
    assert code == 1 and "no PEM certificate" in err


def test_yaml_output_quotes_what_go_reads_as_booleans(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = yaml.safe_load(_secret_yaml())
    secret["metadata"]["annotations"] = {"flag": "y", "other": "N"}
    code, out, _ = run(
        capsys, monkeypatch, "seal", "--cert", str(CERT), stdin=yaml.safe_dump(secret).encode()
    )
    assert code == 0
    assert 'flag: "y"' in out and 'other: "N"' in out


def test_unreachable_cluster_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    kubeconfig.write_text(kubeconfig_yaml("https://127.0.0.1:1", {"token": "t"}))
    code, out, err = run(
        capsys, monkeypatch, "seal", "--fetch-cert", "--kubeconfig", str(kubeconfig)
    )
    assert code == 1 and out == ""
    assert err.startswith("headwater seal: cannot reach the API server")
    assert "Traceback" not in err

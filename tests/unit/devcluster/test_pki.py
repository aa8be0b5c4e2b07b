from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devcluster import pki


def test_serving_certificate_is_signed_by_the_ca_and_names_the_api_server(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority()
    issued = ca.issue(
        "kube-apiserver", dns_names=("kubernetes",), ip_addresses=("127.0.0.1",), server=True
    )
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["kubernetes"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]

    # openssl agrees the chain is valid, independently of cryptography.
    cert_path, _ = issued.write(tmp_path, "apiserver")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"), str(cert_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr


def test_client_certificate_carries_user_and_groups_for_rbac() -> None:
    ca = pki.CertificateAuthority()
    issued = ca.issue("system:kube-scheduler", organizations=("team-a", "team-b"), client=True)
    subject = x509.load_pem_x509_certificate(issued.cert_pem).subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [
        "system:kube-scheduler"
    ]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == [
        "team-a",
        "team-b",
    ]


def test_private_keys_are_written_owner_only(tmp_path: Path) -> None:
    ca = pki.CertificateAuthority()
    _, key_path = ca.issue("someone", client=True).write(tmp_path, "someone")
    assert key_path.stat().st_mode & 0o777 == 0o600

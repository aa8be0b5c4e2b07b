from __future__ import annotations

import dataclasses
import socket

import pytest

from controllers.toolkit.runtime.settings import (
    Address,
    Settings,
    SettingsError,
    parse_address,
    parse_endpoint,
)


def test_defaults_follow_the_design_table() -> None:
    settings = Settings.load(environ={})
    assert settings.namespace == "headwater-system"
    assert settings.storage_addr == Address("", 9090)
    assert settings.events_addr == Address("", 9091)
    assert settings.events_url == "http://127.0.0.1:9091/"
    assert settings.receiver_addr == Address("", 9292)
    assert settings.metrics_addr == Address("", 8080)
    assert settings.health_addr == Address("", 9440)
    assert settings.concurrent == 4
    assert settings.log_format == "text"
    assert settings.log_level == "info"


def test_advertised_storage_address_defaults_to_this_host_for_a_wildcard() -> None:
    settings = Settings.load(environ={"HEADWATER_STORAGE_ADDR": "0.0.0.0:9999"})
    assert settings.storage_adv_addr == Address(socket.gethostname(), 9999)
    assert settings.storage_base_url == f"http://{socket.gethostname()}:9999/"


def test_advertised_storage_address_keeps_an_explicit_host() -> None:
    settings = Settings.load(environ={"HEADWATER_STORAGE_ADDR": "127.0.0.1:9999"})
    assert settings.storage_adv_addr == Address("127.0.0.1", 9999)


def test_environment_sets_every_value() -> None:
    env = {
        "HEADWATER_NAMESPACE": "flux-system",
        "HEADWATER_STORAGE_ADDR": "127.0.0.1:19090",
        "HEADWATER_STORAGE_ADV_ADDR": "source.flux-system.svc:80",
        "HEADWATER_STORAGE_PATH": "/data",
        "HEADWATER_EVENTS_ADDR": "http://notification.flux-system.svc/",
        "HEADWATER_RECEIVER_ADDR": ":19292",
        "HEADWATER_METRICS_ADDR": "[::1]:18080",
        "HEADWATER_HEALTH_ADDR": "localhost:19440",
        "HEADWATER_CONCURRENT": "10",
        "HEADWATER_LOG_FORMAT": "JSON",
        "HEADWATER_LOG_LEVEL": "warn",
    }
    settings = Settings.load(environ=env)
    assert settings.namespace == "flux-system"
    assert settings.storage_addr == Address("127.0.0.1", 19090)
    assert settings.storage_adv_addr == Address("source.flux-system.svc", 80)
    assert settings.storage_path == "/data"
    assert settings.events_addr == Address("notification.flux-system.svc", 80)
    assert settings.events_url == "http://notification.flux-system.svc:80/"
    assert settings.receiver_addr == Address("", 19292)
    assert settings.metrics_addr == Address("::1", 18080)
    assert settings.health_addr == Address("localhost", 19440)
    assert settings.concurrent == 10
    assert settings.log_format == "json"
    assert settings.log_level == "warning"


def test_flags_win_over_the_environment() -> None:
    env = {"HEADWATER_METRICS_ADDR": ":1111", "HEADWATER_CONCURRENT": "2"}
    settings = Settings.load(environ=env, flags={"metrics_addr": ":2222", "concurrent": None})
    assert settings.metrics_addr == Address("", 2222)
    # A flag left unset (None) lets the environment through.
    assert settings.concurrent == 2


def test_empty_variables_count_as_unset() -> None:
    settings = Settings.load(environ={"HEADWATER_METRICS_ADDR": "", "HEADWATER_CONCURRENT": " "})
    assert settings.metrics_addr == Address("", 8080)
    assert settings.concurrent == 4


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEADWATER_METRICS_ADDR", "8080"),
        ("HEADWATER_HEALTH_ADDR", "localhost:http"),
        ("HEADWATER_RECEIVER_ADDR", ":70000"),
        ("HEADWATER_STORAGE_ADDR", "::1:8080"),
        ("HEADWATER_STORAGE_ADDR", "[not-v6]:8080"),
        ("HEADWATER_EVENTS_ADDR", "ftp://example.com/"),
        ("HEADWATER_CONCURRENT", "0"),
        ("HEADWATER_CONCURRENT", "four"),
        ("HEADWATER_LOG_FORMAT", "xml"),
        ("HEADWATER_LOG_LEVEL", "loud"),
        ("HEADWATER_NAMESPACE", "Not_A_Namespace"),
    ],
)
def test_bad_environment_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.load(environ={variable: value})


def test_bad_flag_values_name_the_flag() -> None:
    with pytest.raises(SettingsError, match="--health-addr"):
        Settings.load(environ={}, flags={"health_addr": "nope"})


def test_unknown_flag_names_are_rejected() -> None:
    with pytest.raises(SettingsError, match="bogus"):
        Settings.load(environ={}, flags={"bogus": "1"})


def test_settings_are_frozen() -> None:
    settings = Settings.load(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.concurrent = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8080", Address("", 8080)),
        ("0.0.0.0:0", Address("0.0.0.0", 0)),
        ("example.com:443", Address("example.com", 443)),
        ("[::]:9440", Address("::", 9440)),
    ],
)
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text, source="X") == expected


def test_address_text_form_round_trips() -> None:
    for address in (Address("", 1), Address("::1", 2), Address("host", 3)):
        assert parse_address(str(address), source="X") == address


def test_endpoint_accepts_a_bare_address_and_urls() -> None:
    assert parse_endpoint(":9091", source="X") == (Address("", 9091), "http://127.0.0.1:9091/")
    assert parse_endpoint("https://n.example/hook", source="X") == (
        Address("n.example", 443),
        "https://n.example:443/hook",
    )


def test_leader_election_settings_use_flux_names_and_defaults() -> None:
    defaults = Settings.load(environ={})
    assert defaults.enable_leader_election is None  # decided by in-cluster detection
    assert defaults.leader_election_release_on_cancel is True
    assert (
        defaults.leader_election_lease_duration,
        defaults.leader_election_renew_deadline,
        defaults.leader_election_retry_period,
    ) == (35.0, 30.0, 5.0)
    tuned = Settings.load(
        environ={
            "HEADWATER_ENABLE_LEADER_ELECTION": "true",
            "HEADWATER_LEADER_ELECTION_LEASE_DURATION": "15s",
            "HEADWATER_LEADER_ELECTION_RENEW_DEADLINE": "10s",
            "HEADWATER_LEADER_ELECTION_RETRY_PERIOD": "2s",
        },
        flags={"enable_leader_election": "false"},
    )
    assert tuned.enable_leader_election is False
    assert tuned.leader_election_lease_duration == 15.0
    assert tuned.leader_election_renew_deadline == 10.0
    assert tuned.leader_election_retry_period == 2.0


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"HEADWATER_ENABLE_LEADER_ELECTION": "maybe"}, "HEADWATER_ENABLE_LEADER_ELECTION"),
        ({"HEADWATER_LEADER_ELECTION_RETRY_PERIOD": "0s"}, "must be more than zero"),
        (
            {"HEADWATER_LEADER_ELECTION_LEASE_DURATION": "10s"},
            "lease-duration .* must be longer than --leader-election-renew-deadline",
        ),
        (
            {"HEADWATER_LEADER_ELECTION_RETRY_PERIOD": "29s"},
            "renew-deadline .* must be longer than 1.2 x --leader-election-retry-period",
        ),
        ({"HEADWATER_WATCH_LABEL_SELECTOR": "a in (b"}, "HEADWATER_WATCH_LABEL_SELECTOR"),
    ],
)
def test_bad_leader_election_and_selector_settings(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(SettingsError, match=complaint):
        Settings.load(environ=environ)


def test_watch_label_selector_is_parsed() -> None:
    settings = Settings.load(
        environ={"HEADWATER_WATCH_LABEL_SELECTOR": "sharding.fluxcd.io/key in (shard1)"}
    )
    assert settings.watch_selector.matches({"sharding.fluxcd.io/key": "shard1"})
    assert not settings.watch_selector.matches({})
    assert Settings().watch_selector.empty


def test_full_verify_interval_is_an_hour_and_zero_restores_fluxs_behaviour() -> None:
    assert Settings().full_verify_interval == 3600.0
    assert Settings.load({"HEADWATER_FULL_VERIFY_INTERVAL": "0"}).full_verify_interval == 0
    loaded = Settings.load({}, flags={"full_verify_interval": "15m"})
    assert loaded.full_verify_interval == 900.0
    with pytest.raises(SettingsError, match="HEADWATER_FULL_VERIFY_INTERVAL"):
        Settings.load({"HEADWATER_FULL_VERIFY_INTERVAL": "an hour"})

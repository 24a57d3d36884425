"""Pure TLS policy rules: config values, per-version fields, the PUT plan, drift, cipher/key checks."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError as PydanticValidationError

from rotation.config import TLSPolicySettings
from rotation.core.model import CertName, CertRequest
from rotation.core.tls_drift import AuditTarget, EndpointTLS, VersionProbe, compare
from rotation.core.tls_rules import (
    Profile,
    TLSPolicy,
    api_value,
    cipher_key_check,
    cipher_key_problems,
    field_named,
    plan_update,
    tls12_suites,
)

CURRENT, LEGACY = Profile("7.22.2-14"), Profile("7.2.4-92")
RSA_ONLY = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
ECDSA_ONLY = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
API = {"min_control_TLS_version": "1.2", "min_data_TLS_version": "1.2", "min_sentinel_TLS_version": "1.2",
       "sentinel_tls_mode": "allowed", "sentinel_ssl_policy": "allowed", "control_cipher_suites": "DEFAULT:!3DES",
       "data_cipher_list": ECDSA_ONLY, "data_cipher_suites_tls_1_3": []}


# --- inventory values ------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "stored"), [(1.2, "1.2"), ("1.0", "1"), (1, "1"), ("TLSv1.3", "1.3"), ("1.1", "1.1")])
def test_versions_are_normalised_to_rs_spelling(raw: object, stored: str) -> None:
    assert TLSPolicySettings.model_validate({"min_control_tls": raw}).min_control_tls == stored


@pytest.mark.parametrize("data", [{"min_data_tls": "1.4"}, {"sentinel_tls_mode": "maybe"}, {"unknown": 1}])
def test_bad_policy_values_are_config_errors(data: dict) -> None:
    with pytest.raises(PydanticValidationError):
        TLSPolicySettings.model_validate(data)


# --- per-version rules and the plan ----------------------------------------------------------
def test_current_profile_refuses_old_versions_with_the_reason() -> None:
    plan = plan_update(TLSPolicy(min_control_tls="1.1", min_data_tls="1.3"), CURRENT, API)
    assert not plan.ok
    (refusal,) = plan.refusals
    assert "min_control_tls=1.1" in refusal and "1.2, 1.3" in refusal and "7.4.2" in refusal


def test_legacy_profile_takes_old_versions_and_the_old_sentinel_field() -> None:
    plan = plan_update(TLSPolicy(min_control_tls="1.1", min_data_tls="1", sentinel_tls_mode="required"), LEGACY, API)
    assert plan.ok, plan.refusals
    assert plan.fields == {"min_control_TLS_version": "1.1", "min_data_TLS_version": "1",
                           "sentinel_ssl_policy": "required"}
    assert plan.sentinel_restart and any("supervisorctl restart sentinel_service" in n for n in plan.notes)


def test_legacy_data_minimum_cannot_be_13() -> None:
    plan = plan_update(TLSPolicy(min_data_tls="1.3"), LEGACY, API)
    assert plan.refusals and "1.0, 1.1, 1.2" in plan.refusals[0]


def test_plan_carries_only_differences() -> None:
    plan = plan_update(TLSPolicy(min_control_tls="1.2", min_data_tls="1.3", data_cipher_list=ECDSA_ONLY), CURRENT, API)
    assert plan.fields == {"min_data_TLS_version": "1.3"}
    assert set(plan.unchanged) == {"min_control_tls", "data_cipher_list"} and not plan.sentinel_restart


def test_unknown_version_is_treated_as_current() -> None:
    assert not Profile(None).legacy and Profile(None).wire(field_named("sentinel_tls_mode")) == "sentinel_tls_mode"


@pytest.mark.parametrize(("policy", "needle"), [
    (TLSPolicy(data_cipher_list="NOT-A-CIPHER"), "selects no cipher"),
    (TLSPolicy(data_cipher_suites_tls_1_3="TLS_FAKE_SHA1"), "unknown TLS 1.3 suite"),
])
def test_bad_cipher_strings_are_refused(policy: TLSPolicy, needle: str) -> None:
    plan = plan_update(policy, CURRENT, API)
    assert not plan.ok and needle in plan.refusals[0]


def test_control_list_openssl_cannot_read_is_only_a_note() -> None:
    plan = plan_update(TLSPolicy(control_cipher_suites="[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-RSA-AES128-GCM-SHA256]"),
                       CURRENT, API)
    assert plan.ok and "BoringSSL" in plan.notes[0]


def test_cipher_list_the_served_key_cannot_use_is_refused() -> None:
    plan = plan_update(TLSPolicy(control_cipher_suites=RSA_ONLY), CURRENT, API, {"cm": "ecdsa", "proxy": "ecdsa"})
    assert not plan.ok and "cm: an ECDSA key" in plan.refusals[0]
    assert plan_update(TLSPolicy(control_cipher_suites=RSA_ONLY, min_control_tls="1.3"), CURRENT, API,
                       {"cm": "ecdsa"}).ok


def test_sentinel_spellings_are_read_either_way() -> None:
    mode = field_named("sentinel_tls_mode")
    assert api_value({"sentinel_ssl_policy": "required"}, mode) == "required"
    assert api_value({"data_cipher_suites_tls_1_3": []}, field_named("data_cipher_suites_tls_1_3")) == ""


# --- ciphers and key types -------------------------------------------------------------------
def test_cipher_strings_expand_with_auth() -> None:
    suites = dict(tls12_suites(RSA_ONLY) or ())
    assert suites == {"ECDHE-RSA-AES128-GCM-SHA256": "auth-rsa", "ECDHE-RSA-AES256-GCM-SHA384": "auth-rsa"}
    assert tls12_suites("[A|B]") is None


@pytest.mark.parametrize(("cert", "key", "settings", "refused"), [
    ("cm", "ecdsa", {"control_cipher_suites": RSA_ONLY}, True),
    ("api", "rsa", {"control_cipher_suites": RSA_ONLY}, False),
    ("metrics_exporter", "rsa", {"control_cipher_suites": ECDSA_ONLY}, True),
    ("proxy", "ecdsa", {"data_cipher_list": RSA_ONLY}, True),
    ("proxy", "ecdsa", {"data_cipher_list": RSA_ONLY, "min_data_TLS_version": "1.3"}, False),
    ("proxy", "ecdsa", {"control_cipher_suites": RSA_ONLY}, False),  # the other path's list
    ("syncer", "ecdsa", {"data_cipher_list": RSA_ONLY}, False),
    ("cm", "ecdsa", {"control_cipher_suites": "DEFAULT:!3DES"}, False),
])
def test_cipher_key_problems(cert: str, key: str, settings: dict, refused: bool) -> None:
    assert bool(cipher_key_problems(cert, key, settings)) is refused


class _Bundle:
    def __init__(self, key: object) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
        now = dt.datetime.now(dt.UTC)
        self.leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(key.public_key()).serial_number(1)  # type: ignore[attr-defined]
                     .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


def test_cipher_key_check_is_a_validate_extra_check() -> None:
    check = cipher_key_check({"control_cipher_suites": RSA_ONLY})
    request = CertRequest("sim", CertName.CM, ("x",))
    assert "RS 8.2 refuses" in check(_Bundle(ec.generate_private_key(ec.SECP256R1())), request)[0]
    assert check(_Bundle(rsa.generate_private_key(65537, 2048)), request) == []


# --- drift ------------------------------------------------------------------------------------
def _endpoint(plane: str, accepted: dict[str, bool], suites: tuple[str, ...] | None = None,
              plaintext: bool | None = None) -> EndpointTLS:
    service = {"control": "cm", "data": "proxy", "sentinel": "discovery"}[plane]
    versions = tuple(VersionProbe(v, ok, "ECDHE-ECDSA-AES128-GCM-SHA256" if ok and v != "1.3" else None)
                     for v, ok in accepted.items())
    return EndpointTLS(AuditTarget(plane, service, "2", "127.0.0.2", 8443), versions, suites, plaintext=plaintext)


MODERN = {"1.0": False, "1.1": False, "1.2": True, "1.3": True}


def test_compliant_cluster_has_no_drift() -> None:
    endpoints = [_endpoint("control", MODERN), _endpoint("data", MODERN, ("ECDHE-ECDSA-AES128-GCM-SHA256",)),
                 _endpoint("sentinel", MODERN, plaintext=True)]
    assert compare(TLSPolicy(min_control_tls="1.2"), API, endpoints) == []


def test_node_accepting_11_below_the_api_minimum_is_drift() -> None:
    (drift,) = compare(None, API, [_endpoint("control", {**MODERN, "1.1": True})])
    assert drift.kind == "enforcement" and "accepts TLS 1.1" in drift.message and "cm@node2" in drift.where


def test_policy_differing_from_the_api_is_config_drift() -> None:
    (drift,) = compare(TLSPolicy(min_data_tls="1.3"), API, [])
    assert drift.kind == "config" and "policy 1.3, cluster reports 1.2" in drift.message


def test_suite_outside_the_list_is_drift() -> None:
    (drift,) = compare(None, API, [_endpoint("data", MODERN, ("ECDHE-ECDSA-AES128-GCM-SHA256", "AES128-SHA"))])
    assert "AES128-SHA" in drift.message and drift.field == "data_cipher_list"


def test_sentinel_not_honouring_the_mode_is_drift_with_the_restart_hint() -> None:
    drift = compare(None, {**API, "sentinel_tls_mode": "required"}, [_endpoint("sentinel", MODERN, plaintext=True)])
    assert [d.message for d in drift] == ["accepts plain connections although sentinel_tls_mode is required"]
    assert "supervisorctl restart sentinel_service" in drift[0].hint
    disabled = compare(None, {**API, "sentinel_tls_mode": "disabled"}, [_endpoint("sentinel", MODERN, plaintext=True)])
    assert "accepts TLS although sentinel_tls_mode is disabled" in disabled[0].message


def test_untested_versions_are_not_drift() -> None:
    assert compare(None, API, [_endpoint("control", {"1.0": None, "1.1": None, "1.2": True, "1.3": True})]) == []

"""Objects that hold a secret never show it in their repr (a debugger, a failed assertion, a log line that
formats one with %r) nor in the errors they raise (records, `--json`, chat): the webhook's loaded secrets,
the service settings' Redis URL, a notification URL, an ACME directory URL's password."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rotation.config.service import ServiceSettings
from workers.webhook.snapshot import Snapshot

SLACK = "0123456789abcdef" * 2
MATTERMOST = "abcdefghijklmnopqrst012345"
GENERIC = "generic-hmac-secret-" + "x" * 20


def test_the_webhooks_loaded_secrets_stay_out_of_its_snapshots_repr(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SLACK", SLACK)
    monkeypatch.setenv("T_MM", MATTERMOST)
    monkeypatch.setenv("T_GENERIC", GENERIC)
    path = tmp_path / "rotation.yaml"
    path.write_text(yaml.safe_dump({"clusters": {}, "chatops": {
        "slack": {"signing_secret_env": "T_SLACK"}, "mattermost": {"token_env": "T_MM"},
        "generic": {"secret_env": "T_GENERIC"}}}))
    snapshot = Snapshot.load(path)
    assert snapshot.platforms() == {"slack": True, "mattermost": True, "generic": True}
    shown = repr(snapshot)
    for secret in (SLACK, MATTERMOST, GENERIC):
        assert secret not in shown


def test_the_redis_password_stays_out_of_the_service_settings_repr() -> None:
    settings = ServiceSettings(redis_url="redis://:hunter2redispw@127.0.0.1:6379/0")
    assert "hunter2redispw" not in repr(settings)
    assert "hunter2redispw" not in str(settings)


def test_a_notification_url_written_in_the_inventory_stays_out_of_its_repr(tmp_path: Path) -> None:
    from rotation.config import load_inventory

    url = "https://hooks.slack.com/services/T0123/B0123/bearerpart0123456789"
    path = tmp_path / "rotation.yaml"
    path.write_text(yaml.safe_dump({"clusters": {}, "chatops": {"notify": {"url": url}}}))
    inventory = load_inventory(path)
    assert inventory.chatops.notify_url() == url
    assert "bearerpart0123456789" not in repr(inventory)
    assert "bearerpart0123456789" not in repr(inventory.chatops.notify)


def test_a_password_in_an_acme_directory_url_stays_out_of_errors_and_repr(tmp_path: Path) -> None:
    from rotation.adapters.issuers.acme.issuer import AcmeIssuer
    from rotation.core.errors import RotationError

    issuer = AcmeIssuer("le", directory="https://acct:hunter2acme@127.0.0.1:1/directory", challenge="http-01")
    with pytest.raises(RotationError) as caught:  # nothing listens there: the directory is unreachable
        issuer.check()
    assert "127.0.0.1:1" in caught.value.message  # still says where
    assert "hunter2acme" not in caught.value.message
    assert "hunter2acme" not in repr(issuer) and "hunter2acme" not in repr(issuer.account)

"""The service's encryption key (ROTATION_SECRET_KEY / ROTATION_SECRET_KEY_FILE): an empty or malformed key is
refused naming the setting that holds it, never replaced by another key, never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rotation.adapters.secrets import SecretBox
from rotation.core.errors import ConfigError


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secret-key"
    monkeypatch.delenv("ROTATION_SECRET_KEY", raising=False)
    monkeypatch.setenv("ROTATION_SECRET_KEY_FILE", str(path))
    return path


@pytest.mark.parametrize("content", ["", "\n", "  \n"])
def test_an_empty_key_file_is_refused_naming_it_not_replaced_by_a_local_key(key_file: Path, tmp_path: Path,
                                                                             content: str) -> None:
    key_file.write_text(content)
    state = tmp_path / "state"
    with pytest.raises(ConfigError) as caught:
        SecretBox.configured(state_dir=state)  # before: a key generated in state/ was used instead, silently
    assert f"ROTATION_SECRET_KEY_FILE={key_file}" in caught.value.message
    assert "empty" in caught.value.message
    assert not (state / "secret.key").exists()
    with pytest.raises(ConfigError, match="ROTATION_SECRET_KEY_FILE"):
        SecretBox.configured()  # the service (no local key): named the file, not ROTATION_SECRET_KEY


def test_a_short_key_in_the_file_is_refused_naming_the_file_not_the_value(key_file: Path) -> None:
    key_file.write_text("tooshort-s3cr3t\n")
    with pytest.raises(ConfigError) as caught:
        SecretBox.configured()
    assert caught.value.message.startswith("ROTATION_SECRET_KEY_FILE"), caught.value.message
    assert "tooshort-s3cr3t" not in caught.value.message


def test_a_short_key_in_the_environment_is_refused_naming_it_not_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROTATION_SECRET_KEY_FILE", raising=False)
    monkeypatch.setenv("ROTATION_SECRET_KEY", "tooshort-s3cr3t")
    with pytest.raises(ConfigError) as caught:
        SecretBox.configured()
    assert caught.value.message.startswith("ROTATION_SECRET_KEY:"), caught.value.message
    assert "tooshort-s3cr3t" not in caught.value.message


def test_a_key_file_holding_a_key_works(key_file: Path) -> None:
    key_file.write_text(SecretBox.generate_key() + "\n")
    box = SecretBox.configured()
    assert box.decrypt(box.encrypt(b"x")) == b"x"


def test_a_local_key_whose_write_failed_is_made_again_not_left_empty_for_good(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Single host without ROTATION_SECRET_KEY: the key generated in the state folder. A first write that fails
    (disk full; here a file size limit of 0) left an empty secret.key, and every later run then failed with
    "no encryption key: set ROTATION_SECRET_KEY"; two first runs at once could see it empty too."""
    import resource
    import subprocess
    import sys

    monkeypatch.delenv("ROTATION_SECRET_KEY", raising=False)
    monkeypatch.delenv("ROTATION_SECRET_KEY_FILE", raising=False)
    state = tmp_path / "state"
    state.mkdir()
    code = ("import sys; from pathlib import Path; from rotation.adapters.secrets import SecretBox; "
            "SecretBox.configured(state_dir=Path(sys.argv[1]))")
    failed = subprocess.run([sys.executable, "-c", code, str(state)], capture_output=True, text=True, timeout=60,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)))
    assert failed.returncode != 0, failed.stderr  # the disk took nothing
    box = SecretBox.configured(state_dir=state)
    assert box.decrypt(box.encrypt(b"x")) == b"x"
    key = state / "secret.key"
    assert key.read_text().strip() and key.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in state.iterdir()) == ["secret.key"]  # no temporary file left behind

"""The inventory: one YAML file listing issuers, clusters and chat-ops access.

This package is the only reader of the inventory file and of the environment variables and
secret files it names. Secrets never sit in the file in clear: ``password_env`` /
``password_file``, ``ca_key_file`` (+ ``ca_key_password_env``), ``eab_hmac_key_env``.

The file is reloaded live by workers and the webhook, so reading it is bounded: at most
``MAX_BYTES`` (1 MiB), and YAML aliases may expand the document to at most ``MAX_NODES`` nodes
(a 919-byte file of nested aliases used to expand until memory ran out), checked on the parsed
node graph before anything is built from it.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from rotation.config._base import Renewal, _Strict
from rotation.config.chatops import ChatOpsSettings
from rotation.config.clusters import ClusterSettings
from rotation.config.files import read_regular
from rotation.config.issuers import IssuerSettings
from rotation.config.load_checks import load_problems, variable_name_problems
from rotation.config.plans import CertPlan, impossible_plans, other_plan, rest_client_issuer_problem
from rotation.core.durations import RenewBefore
from rotation.core.errors import ConfigError, RotationError
from rotation.core.model import CertName
from rotation.core.targets import LDAP_CLIENT, REST_CLIENT, database_target

CONFIG_ENV = "ROTATION_CONFIG"
DEFAULT_CONFIG = Path("rotation.yaml")
MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000  # YAML nodes once every alias is expanded; a large fleet's inventory has a few thousand
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # used in Redis keys and metric labels

log = logging.getLogger(__name__)
_WARNED: set[str] = set()  # load-time warnings already logged by this process



class Inventory(_Strict):
    renew_before: Renewal = RenewBefore(absolute=timedelta(days=30))
    issuers: dict[str, IssuerSettings] = Field(default_factory=dict)
    clusters: dict[str, ClusterSettings] = Field(default_factory=dict)
    chatops: ChatOpsSettings = ChatOpsSettings()
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("clusters", "issuers")
    @classmethod
    def _plain_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r}: names may use letters, digits, '.', '_' and '-' only")
        return value

    @model_validator(mode="after")
    def _chatops_clusters_exist(self) -> Inventory:
        for index, grant in enumerate(self.chatops.allow):
            unknown = sorted(set(grant.clusters) - set(self.clusters) - {"*"})
            if unknown:
                raise ValueError(f"chatops.allow.{index}.clusters: unknown cluster(s) {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _issuers_exist(self) -> Inventory:
        for name, cluster in self.clusters.items():
            named = [(f"certificates.{c}", s.issuer) for c, s in cluster.certificates.items()]
            named += [(f"databases.{d}", s.issuer) for d, s in cluster.databases.items()]
            named += [("ldap_client", cluster.ldap_client.issuer)] if cluster.ldap_client else []
            for part, own in named:
                issuer = own or cluster.issuer
                where = f"clusters.{name}.{part}.issuer" if own else f"clusters.{name}.issuer"
                if issuer is not None and issuer not in self.issuers:
                    known = ", ".join(sorted(self.issuers)) or "none defined"
                    raise ValueError(f"{where}: unknown issuer {issuer!r} (issuers: {known})")
            problem = rest_client_issuer_problem(self, cluster)
            if problem:
                raise ValueError(f"clusters.{name}.rest_client.issuer: {problem}")
        impossible = impossible_plans(self)  # refused before any order (config/plans.py)
        if impossible:
            raise ValueError("\n".join(impossible))  # one line per problem, each given the file (_format_error)
        return self

    def cluster(self, name: str) -> ClusterSettings:
        try:
            return self.clusters[name]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(f"unknown cluster {name!r} (clusters in the inventory: {known})") from None

    def api_trust(self, cluster_name: str) -> list[str]:
        """CA PEMs the REST client must trust besides ``verify``: the anchors of the issuer of this
        cluster's ``api`` certificate, so the client keeps working after ``api`` is rotated. Read from
        the issuer's files; an unreadable one adds nothing (read-only commands must still work)."""
        return self.api_trust_and_problem(cluster_name)[0]

    def api_trust_and_problem(self, cluster_name: str) -> tuple[list[str], str | None]:
        """``api_trust`` and, when the issuer's anchors could not be read, why (``issuers.X: ...``): a
        verification failure then names that cause instead of the ``verify`` bundle."""
        cluster = self.cluster(cluster_name)
        if CertName.API not in cluster.certificates:
            return [], None
        issuer_name = self.plan(cluster_name, CertName.API).issuer
        if not issuer_name:
            return [], None
        try:
            return self.issuers[issuer_name].trust_anchor_pems(), None
        except RotationError as exc:
            log.debug("no extra trust from issuer %s: %s", issuer_name, exc.message)
            return [], f"issuers.{issuer_name}: {exc.message}"

    def targets(self, cluster_name: str) -> list[CertName | str]:
        """Every certificate the inventory manages on a cluster: its slots, ``rest_client``, ``db:<key>``."""
        cluster = self.cluster(cluster_name)
        return [*cluster.certificates, *([REST_CLIENT] if cluster.rest_client else []),
                *([LDAP_CLIENT] if cluster.ldap_client else []), *(database_target(key) for key in cluster.databases)]

    def plan(self, cluster_name: str, cert_name: str | CertName) -> CertPlan:
        """Everything needed to renew one certificate (a slot, ``rest_client`` or ``db:<key>``), with
        overrides resolved."""
        cluster = self.cluster(cluster_name)
        other = other_plan(self, cluster_name, str(cert_name))
        if other is not None:
            return other
        try:
            name = CertName(cert_name)
        except ValueError:
            known = ", ".join(c.value for c in CertName)
            raise ConfigError(f"unknown certificate name {cert_name!r} (known: {known}, {REST_CLIENT}, "
                              f"{LDAP_CLIENT}, db:<database>)") from None
        if name not in cluster.certificates:
            managed = ", ".join(str(c) for c in cluster.certificates) or "none"
            raise ConfigError(
                f"clusters.{cluster_name}: certificate {name} is not managed (managed: {managed})"
            )
        cert = cluster.certificates[name]
        issuer = cert.issuer or cluster.issuer or (next(iter(self.issuers)) if len(self.issuers) == 1 else None)
        return CertPlan(
            cluster=cluster_name,
            cert_name=name,
            issuer=issuer,
            key_type=cert.key_type or cluster.key_type or (self.issuers[issuer].key_type if issuer else None),
            renew_before=cert.renew_before or cluster.renew_before or self.renew_before,
            hosts=cert.hosts or cluster.default_hosts(),
        )


def _resolve_paths(data: Any, base: Path) -> Any:
    """Relative paths in the file are relative to the file, not to the working directory."""
    path_keys = {"ca_cert", "ca_key_file", "password_file", "ca_key_password_file", "cert_file",
                 "key_file", "key_password_file", "ca_bundle", "verify", "eab_hmac_key_file",
                 "account_key_file", "tsig_secret_file", "trust_roots",
                 "signing_secret_file", "token_file", "secret_file", "url_file", "client_cert_file",
                 "client_key_file"}
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in path_keys and isinstance(value, list):
                out[key] = [_resolve_path(key, v, base) for v in value]
            elif key in path_keys:
                out[key] = _resolve_path(key, value, base)
            else:
                out[key] = _resolve_paths(value, base)
        return out
    return data


def _resolve_path(key: str, value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        return value  # not a path: the model refuses it, naming the field
    if "\x00" in value:
        raise ConfigError(f"{key}: a path with a NUL character")
    return value if os.path.isabs(value) else str((base / value).resolve())


def _format_error(path: Path, exc: PydanticValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        message = error["msg"].removeprefix("Value error, ")
        lines += [f"{path}: {loc}: {part}" if loc else f"{path}: {part}" for part in message.splitlines()]
    return "\n".join(lines)


def resolve_config_path(path: Path | str | None) -> Path:
    if path:
        return Path(path)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def _read(config_path: Path) -> str:
    try:
        raw = read_regular(config_path, MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"{config_path}: inventory file not found (pass --config or set {CONFIG_ENV})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{config_path}: over {MAX_BYTES // (1024 * 1024)} MiB; an inventory is far smaller")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_path}: not UTF-8 text (byte {exc.start})") from None


def parse_yaml(text: str, where: Path | str) -> Any:
    """The YAML document in ``text``, refused when its aliases expand beyond MAX_NODES nodes."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}:{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_expansion(root: yaml.Node, where: Path | str) -> None:
    """Count the nodes the document has once aliases are expanded, without expanding them:
    each node's expanded size is computed once (iteratively: no recursion on deep files)."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise ConfigError(f"{where}: YAML aliases expand the document beyond {MAX_NODES} nodes "
                                  "(an alias bomb?); write the values out instead")
        elif key not in sizes:
            if key in ancestors:
                raise ConfigError(f"{where}: a YAML alias refers to a node that contains it")
            ancestors.add(key)
            _no_key_twice(node, where)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _no_key_twice(node: yaml.Node, where: Path | str) -> None:
    """A key written twice in one mapping is refused: YAML keeps the last one silently, so a cluster block
    copied and left with its old name would drop the first cluster from management."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        if (key.tag, key.value) in seen:
            raise ConfigError(f"{where}: line {key.start_mark.line + 1}: key {key.value!r} written twice in one "
                              "mapping (YAML would keep only the last one)")
        seen.add((key.tag, key.value))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _warn_once(message: str) -> None:
    """Log a load-time warning once per process: a command may load the file twice, a worker on every edit."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def load_inventory(path: Path | str | None = None, *, check_files: bool = True) -> Inventory:
    """Read and check the inventory. Every problem is a ConfigError naming the file and field.
    ``check_files=False``: the files and variables it names are not looked at (``rotation config
    check`` reports each of them as a finding of its own)."""
    config_path = resolve_config_path(path)
    return parse_inventory(_read(config_path), config_path, check_files=check_files)


def parse_inventory(text: str, config_path: Path, *, check_files: bool = True) -> Inventory:
    """The inventory in ``text`` (relative paths against ``config_path``'s folder); ConfigError
    and nothing else for anything that is not one (the fuzz tests hold it to that)."""
    data = parse_yaml(text, config_path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{config_path}: the inventory must be a mapping with issuers and clusters")
    try:
        data = _resolve_paths(data, config_path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc.message}") from None
    # every problem listed at once: the model's and these
    errors, warnings = load_problems(data, config_path) if check_files else ([], [])
    errors = [*variable_name_problems(data, config_path), *errors]  # checked always: config check too
    try:
        inventory = Inventory.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError("\n".join([_format_error(config_path, exc), *errors])) from None
    if errors:
        raise ConfigError("\n".join(errors))
    for warning in warnings:
        _warn_once(warning)
    for part in (*inventory.clusters.values(), *inventory.issuers.values(), inventory.chatops):
        part.located_in(config_path)  # secrets read later name the file too
    for name, cluster in inventory.clusters.items():
        if cluster.verify is False:
            # logged, not warnings.warn: one line without a Python source line (the CLI prints it as
            # `warning: ...`, a service through its log format), once per process
            _warn_once(f"{config_path}: clusters.{name}.verify is false: TLS to the REST API of {name} is NOT "
                       "verified; anyone on the path can read the admin password and the private keys")
    return inventory.model_copy(update={"source": config_path})

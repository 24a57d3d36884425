"""The inventory (YAML, pydantic) and the service's environment settings.

``inventory``  the file: issuers, clusters, chat-ops; ``load_inventory`` checks it
``clusters``   a cluster's REST access, certificates, ports and TLS policy
``issuers``    ``internal_ca``, ``files`` and ``acme`` issuer sections
``chatops``    the webhook's allow-list and secrets
``service``    ServiceSettings from ROTATION_* environment variables
"""

from rotation.config.chatops import ChatOpsSettings
from rotation.config.clusters import CertificateSettings, ClusterSettings, Ports, TLSPolicySettings
from rotation.config.inventory import (
    CONFIG_ENV,
    CertPlan,
    Inventory,
    load_inventory,
    resolve_config_path,
)
from rotation.config.issuers import AcmeSettings, FilesSettings, InternalCASettings, IssuerSettings
from rotation.config.service import STATE_DIR_ENV, ServiceSettings, local_state_dir

__all__ = [
    "CONFIG_ENV",
    "STATE_DIR_ENV",
    "AcmeSettings",
    "CertPlan",
    "CertificateSettings",
    "ChatOpsSettings",
    "ClusterSettings",
    "FilesSettings",
    "InternalCASettings",
    "Inventory",
    "IssuerSettings",
    "Ports",
    "ServiceSettings",
    "TLSPolicySettings",
    "load_inventory",
    "local_state_dir",
    "resolve_config_path",
]

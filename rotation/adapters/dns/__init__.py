"""DNS providers for ACME DNS-01: ``base`` (the interface), ``registry`` (the explicit list), ``rfc2136``."""

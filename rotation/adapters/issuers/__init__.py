"""Issuers: where new certificates come from (an internal CA, files, any ACME CA).

base          the ``Issuer`` interface (check, issue, trust anchors, optional ARI)
registry      the built-in types, an explicit table (no registration at import time)
factory       issuers built once from explicit dependencies, cached per settings and files
internal_ca   signs with a CA the operator keeps (``rotation ca init`` makes one)
files         certificates renewed by another PKI process
acme/         any ACME CA (account, bounded HTTP, HTTP-01 responder; DNS-01 via ``adapters.dns``)
"""

"""An issuer for any ACME CA: ``issuer`` (orders, ARI, error translation), ``account``, ``http`` (bounded
requests), ``http01`` (the challenge responder)."""

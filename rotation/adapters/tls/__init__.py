"""TLS seen from outside: ``probe`` (what an endpoint serves), ``audit`` (which versions and ciphers it
accepts), ``trust`` (would a client accept a pair), ``aio`` (the event loop they run on)."""

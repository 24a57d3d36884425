"""Everything that talks to the outside (RS clusters, TLS endpoints, CAs, DNS, Redis, files, chat),
each behind a small interface; foreign errors are translated here, once. Imports config and core."""

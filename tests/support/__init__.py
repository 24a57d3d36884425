"""What the tests share: real processes (Redis, the service), servers that misbehave, a fake clock."""

"""The RS REST API: ``client.RSClient`` and its one error mapper."""

"""A rotation: ``record.rotate_and_record`` (the one path), ``pipeline.rotate`` (the order of the
steps), ``run`` (its record and steps), ``recovery`` (every exit after a push), ``interrupts``."""

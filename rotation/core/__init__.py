"""The pure core: values, rules and decisions. No I/O, no clock reads, no environment; imports only
``rotation.core``. Time comes in through ``clock.Clock``, randomness as a parameter."""

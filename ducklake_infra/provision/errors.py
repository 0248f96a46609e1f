"""Expected errors: the CLI and the pytest plugin print these as one clear line."""


class DucklakeInfraError(Exception):
    """An expected failure with a message that says what to do."""

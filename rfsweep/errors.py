"""The one error type users see: a single line naming the field and the value."""


class RFSweepError(ValueError):
    """Bad input. The CLI prints ``error: <message>`` and exits with code 2, no traceback."""


class SpecError(RFSweepError):
    """A network or search spec that cannot be evaluated."""

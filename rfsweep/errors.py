"""The one error type users see: a single line naming the field and the value."""


class RFSweepError(ValueError):
    """Bad input. The CLI prints ``error: <message>`` and exits with code 2, no traceback."""


class SpecError(RFSweepError):
    """A network or search spec that cannot be evaluated."""


def field_error(fieldname: str, value, why: str, layer: str | None = None, cls: type = RFSweepError) -> RFSweepError:
    """The one-line error every check raises: ``[layer 'L': ]field 'F': value V: why``."""
    import json

    where = f"layer '{layer}': " if layer is not None else ""
    return cls(f"{where}field '{fieldname}': value {json.dumps(value, default=str)}: {why}")

"""The one error type users see: a single line naming the field and the value."""

import json


class RFSweepError(ValueError):
    """Bad input. The CLI prints ``error: <message>`` and exits with code 2, no traceback."""


SpecError = RFSweepError  # the name network-spec errors were raised under; one type since 0.2


def field_error(fieldname: str, value, why: str, layer: str | None = None) -> RFSweepError:
    """The one-line error every check raises: ``[layer 'L': ]field 'F': value V: why``."""
    where = f"layer '{layer}': " if layer is not None else ""
    return RFSweepError(f"{where}field '{fieldname}': value {json.dumps(value, default=str)}: {why}")

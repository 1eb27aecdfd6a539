"""Where the tests find the repository's files, whichever folder of tests/ a test lives in."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
REFERENCE = TESTS / "reference"  # the published tables the tests use, sources in its README

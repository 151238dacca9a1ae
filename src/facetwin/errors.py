"""The one exception type users see: a single clear sentence that names the file and the problem."""


class FacetwinError(Exception):
    """A user-facing error. Its message is one sentence; the CLI prints it and exits with status 2."""

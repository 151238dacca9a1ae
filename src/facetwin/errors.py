"""The one exception type users see: a single clear sentence that names the file and the problem."""


class FacetwinError(Exception):
    """A user-facing error. Its message is one sentence; the CLI prints it and exits with status 2."""


class NoFaceError(FacetwinError):
    """No face was found in a photo. The message says which photo; a command that has ``--no-face`` adds how to
    go on with a centred crop instead."""

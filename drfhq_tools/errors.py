"""One error type for everything a user can fix; the CLI prints it without a traceback."""


class DrfhqError(Exception):
    """A problem with the user's input, options or files, stated so that they can fix it."""


class MissingWeightsError(DrfhqError):
    """A pretrained file is absent or corrupt; the message names it and how to supply it."""

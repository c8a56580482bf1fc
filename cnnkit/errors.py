"""The one exception type that means "the user asked for something that cannot work".

The CLI turns it into a one-line message and exit code 2; anything else is a bug (exit 1).
"""


class CnnkitError(Exception):
    """Bad input: a missing dataset, an unknown model, an ill-typed option, a missing run..."""

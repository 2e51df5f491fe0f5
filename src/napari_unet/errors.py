"""One error type for everything a user can get wrong, so the CLI and widgets can show it without a traceback."""


class InputError(ValueError):
    """Bad input from the user: the message says what was wrong and what to do."""

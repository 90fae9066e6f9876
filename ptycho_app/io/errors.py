"""Errors for a user's files: one line that names the file, the field and what was expected."""

from __future__ import annotations


class InputFileError(ValueError):
    """A measurement, result or MATLAB file cannot be used.

    The message reads ``"<file>: <field>: <problem>"`` so the command line can print it as is.
    """

    def __init__(self, path, problem, field=None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}: {field}: " if field else f"{self.path}: "
        super().__init__(where + problem)

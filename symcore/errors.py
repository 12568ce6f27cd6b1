"""Typed errors: every failure symcore reports on bad input is one of these."""

from __future__ import annotations


class SymcoreError(Exception):
    """Base class of every error symcore raises on purpose."""


class ParseError(SymcoreError, ValueError):
    """Text that does not read in the chosen dialect; names the position and the reason."""

    def __init__(self, reason: str, text: str | None = None, pos: int | None = None,
                 dialect: str | None = None) -> None:
        self.reason = reason
        self.text = text
        self.pos = pos
        self.dialect = dialect
        where = f" at position {pos}" if pos is not None else ""
        dia = f" ({dialect})" if dialect else ""
        snippet = ""
        if text is not None and pos is not None:
            lo = max(0, pos - 20)
            snippet = f": ...{text[lo:pos + 20]!r}..." if len(text) > 40 else f": {text!r}"
        elif text is not None:
            snippet = f": {text[:60]!r}"
        super().__init__(f"cannot read expression{dia}{where}: {reason}{snippet}")


class UnknownOperatorError(SymcoreError, KeyError):
    """An operator or function name that the ops table (or the dialect) does not know."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else "unknown operator"


class ArityError(SymcoreError, TypeError):
    """An operator applied to the wrong number of operands."""


class DialectError(SymcoreError, ValueError):
    """An unknown dialect, or an expression the dialect cannot express."""


class DataError(SymcoreError, ValueError):
    """Input data (arrays, frames, parameter vectors) of the wrong shape, dtype or layout."""


class CompileError(SymcoreError, RuntimeError):
    """Code generation or native compilation failed."""


class ExportError(SymcoreError, RuntimeError):
    """An export could not be written (missing tool, unwritable path, inexpressible model)."""


class FitError(SymcoreError, ValueError):
    """Constant fitting was asked something it cannot do."""


class OpFieldError(SymcoreError, LookupError):
    """An operator lacks the field a layer needs (e.g. a user op without `latex` in to_latex)."""


class OpRegistrationError(SymcoreError, ValueError):
    """An operator that cannot be registered (a built-in name, a conflicting redefinition, a
    malformed field)."""

"""The ``perfml`` command: parse, call the library, render. No logic of its own lives here."""

"""Config mistakes explained: configobj's syntax errors in words, and "did you mean" for names.

configobj stops at a broken line with its own terse text ("Cannot compute the section depth
at line 4."). Each is turned here into the line number, what is wrong, what was expected and
an example. No message quotes a line as written: it could hold a secret (an API key pasted
without its ``apikey =``). Only section names and the names of known settings are shown.
"""

import difflib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from configobj import ConfigObjError, DuplicateError, NestingError, ParseError

TOP_SECTIONS = ("gateway", "listeners", "buffers", "nodes")


def suggest(name: str, candidates: Iterable[str]) -> Optional[str]:
    """The candidate ``name`` is most probably a misspelling of, or None: a different
    capitalisation, or a close spelling (``api_key`` -> ``apikey``, ``sockte`` -> ``socket``)."""
    by_lower: Dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(str(candidate).lower(), str(candidate))
    wanted = name.strip().lower()
    if wanted in by_lower:
        return by_lower[wanted]
    swapped = [c for c in by_lower if len(c) == len(wanted) and sorted(c) == sorted(wanted)
               and sum(a != b for a, b in zip(c, wanted)) == 2]   # two letters swapped: "xt"
    if swapped:
        return by_lower[swapped[0]]
    close = difflib.get_close_matches(wanted, list(by_lower), n=1, cutoff=0.75)
    if not close:   # a shorter name: one letter in four wrong is still a typo
        close = [c for c in difflib.get_close_matches(wanted, list(by_lower), n=1, cutoff=0.6)
                 if abs(len(c) - len(wanted)) <= 2]
    return by_lower[close[0]] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'apikey'?"``, or "" when no candidate is close."""
    guess = suggest(name, candidates)
    return f"; did you mean '{guess}'?" if guess is not None and guess != name else ""


def section_label(path: Sequence[str]) -> str:
    """``('listeners', 'Socket')`` -> ``[listeners] [[Socket]]``."""
    return " ".join("[" * depth + name + "]" * depth for depth, name in enumerate(path, 1))


class Places:
    """Where each section and key of a config file is, to put line numbers in messages."""

    def __init__(self, path: str, text: str):
        from gateway import configtext   # (it imports gateway.config, which imports this module)
        self.path = path
        self.lines = text.splitlines()
        self.sections: Dict[Tuple[str, ...], int] = {}
        self.keys: Dict[Tuple[Tuple[str, ...], str], int] = {}
        self.trail: List[Tuple[int, Tuple[str, ...], Optional[str]]] = []   # in file order
        for index, path_, entry in configtext.scan(text):
            if entry is None:
                self.sections.setdefault(path_, index + 1)
                self.trail.append((index + 1, path_, None))
            elif entry.parsed:
                self.keys.setdefault((path_, entry.key), index + 1)
                self.trail.append((index + 1, path_, entry.key))

    def line(self, section: Sequence[str], key: Optional[str] = None) -> Optional[int]:
        """The 1-based line of ``key`` in ``section`` (else of the section's header), or None."""
        section = tuple(section)
        if key is not None and (section, key) in self.keys:
            return self.keys[(section, key)]
        return self.sections.get(section)

    def at(self, section: Sequence[str] = (), key: Optional[str] = None) -> str:
        """``/etc/oemgateway/oemgateway.conf:12`` (the file alone when the place is unknown)."""
        line = self.line(section, key) if section or key else None
        return f"{self.path}:{line}" if line else self.path

    def section_at(self, line: int) -> Tuple[str, ...]:
        """The section a line is in (as far as the text's brackets say)."""
        current: Tuple[str, ...] = ()
        for number, path, key in self.trail:
            if number > line:
                break
            current = path
        return current


# -- syntax errors -------------------------------------------------------------------------
def syntax_problems(places: Places, error: ConfigObjError, known_keys: Iterable[str]) -> List[str]:
    """configobj's parse errors, one message each, every one with its line; errors that only
    follow from another (the keys under a section header that could not be used, which
    configobj files in the section before) are left out."""
    errors = getattr(error, "errors", None) or [error]
    known = frozenset(known_keys)
    problems, skip_until = [], None
    for err in errors:
        number = getattr(err, "line_number", None)
        if skip_until is not None and number is not None and number < skip_until \
                and isinstance(err, DuplicateError) and "keyword" in str(err):
            continue
        message = _explain(places, err, number, known)
        if number and number <= len(places.lines) and places.lines[number - 1].lstrip().startswith("["):
            skip_until = _next_section_line(places, number)
        where = f"{places.path}:{number}" if number else places.path
        problems.append(f"{where}: {message}")
    return problems


def _next_section_line(places: Places, number: int) -> int:
    return next((n for n, _, key in places.trail if key is None and n > number), len(places.lines) + 1)


def _explain(places: Places, err: Exception, number: Optional[int], known: frozenset) -> str:
    line = places.lines[number - 1] if number and number <= len(places.lines) else ""
    stripped = line.strip()
    text = str(err)
    if isinstance(err, NestingError) and text.startswith("Cannot compute"):
        return _unbalanced(stripped)
    if isinstance(err, NestingError):
        return _too_nested(places, stripped, number)
    if isinstance(err, DuplicateError) and "section" in text:
        name = stripped.strip("[] \t")
        first = next((n for n, path, key in places.trail
                      if key is None and path and path[-1] == name and n < (number or 0)), None)
        return (f"section {_brackets(stripped)}{name}{_closing(stripped)} is written a second time in "
                f"the same place{f' (first at line {first})' if first else ''}: each section needs its "
                f"own name (e.g. [[socket]] and [[socket2]]); the settings below this line are not read")
    if isinstance(err, DuplicateError):
        key = _key_name(stripped)
        section = places.section_at(number or 0)
        first = next((n for n, path, k in places.trail if path == section and k == key
                      and n < (number or 0)), None)
        where = section_label(section) if section else "the top of the file"
        return (f"'{key}' is set a second time in {where}{f' (first at line {first})' if first else ''}: "
                "keep one of the two lines")
    if isinstance(err, ParseError) and "multiline" in text:
        quote = next((q for q in ('"""', "'''") if q in line), "'''")
        return (f"the value of '{_key_name(stripped)}' starts with {quote} and is never closed: every "
                f"line after it would be part of the value; end it with {quote} (e.g. "
                f"headers = {quote}a{quote}), or remove the quotes")
    if isinstance(err, ParseError) and "in value" in text:
        return (f"the value of '{_key_name(stripped)}' cannot be read: a quote is not closed, or "
                "text follows a closing quote; write it without quotes (url = http://localhost), "
                "or quote it whole (name = \"a, b\"), or as a list (allow = 10.0.0.1, 10.0.0.2)")
    if isinstance(err, ParseError):
        return _invalid_line(stripped, known)
    return f"cannot be read ({type(err).__name__})"


def _unbalanced(stripped: str) -> str:
    opening = len(stripped) - len(stripped.lstrip("["))
    body = stripped.lstrip("[")
    closing = len(body.split("#")[0].rstrip()) - len(body.split("#")[0].rstrip().rstrip("]"))
    name = body.split("#")[0].strip().rstrip("]").strip()
    return (f"the section header has {opening} opening and {closing} closing brackets: write as many on "
            f"both sides, e.g. {'[' * opening}{name or 'name'}{']' * opening}")


def _too_nested(places: Places, stripped: str, number: Optional[int]) -> str:
    depth = len(stripped) - len(stripped.lstrip("["))
    name = stripped.strip("[] \t")
    parent = places.section_at((number or 1) - 1)
    example = "e.g. [listeners], then [[socket]] in it, then [[[init_settings]]] in that"
    if not parent:
        return (f"section {'[' * depth}{name}{']' * depth} has {depth} brackets but is not inside "
                f"a section: a top-level section has one, e.g. [listeners] ({example})")
    return (f"section {'[' * depth}{name}{']' * depth} has {depth} brackets, but the section above it, "
            f"{section_label(parent)}, has {len(parent)}: a section can be at most one level deeper "
            f"than the one it is in ({example})")


def _invalid_line(stripped: str, known: frozenset) -> str:
    if stripped.startswith("[") and stripped.strip("[] \t") == "":
        return "a section header needs a name between its brackets, e.g. [listeners]"
    if stripped.startswith("["):
        depth = len(stripped) - len(stripped.lstrip("["))
        return (f"a section header must end with {']' * depth}, e.g. {'[' * depth}listeners{']' * depth} "
                "(and nothing but a # comment may follow it)")
    word = stripped.replace(":", " ").split()[0] if stripped.replace(":", " ").split() else ""
    shown = f"'{word}' " if word in known else "this line "
    if ":" in stripped.split()[0] if stripped.split() else False:
        return f"{shown}uses ':' where '=' is expected: write name = value, e.g. apikey = 0123..."
    return (f"{shown}has no '=': every line is a [section], a name = value, or a # comment "
            "(e.g. port = 50011)")


def _key_name(stripped: str) -> str:
    return stripped.split("=", 1)[0].strip().strip("'\"")


def _brackets(stripped: str) -> str:
    return "[" * (len(stripped) - len(stripped.lstrip("[")))


def _closing(stripped: str) -> str:
    return "]" * (len(stripped) - len(stripped.lstrip("[")))

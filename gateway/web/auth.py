"""Who may use the web page: the password's salted hash, login sessions with their CSRF
tokens, and the per-address limit on login attempts.

The password is stored in the config as a salted PBKDF2 hash (``oemgateway --hash-password``,
kept in ``[gateway] web_password_hash``); a login gives a session cookie (HttpOnly,
SameSite=Strict) and a CSRF token that every change must send back in ``X-CSRF-Token``; login
attempts are rate-limited per client address, counted before the password is checked.
"""

import base64
import collections
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

COOKIE = "oemgateway_session"
HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 200_000


# -- passwords ------------------------------------------------------------------------------
def hash_password(password: str, iterations: int = HASH_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64): what ``web_password_hash`` holds."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join((HASH_SCHEME, str(iterations), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches a ``hash_password`` result; False for anything malformed."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != HASH_SCHEME:
            return False
        computed = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"),
                                       base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def session_token(headers) -> Optional[str]:
    """The session cookie's value in a request's headers, or None."""
    for part in (headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


# -- sessions and login limits --------------------------------------------------------------
class Sessions:
    """Login sessions: a random cookie token -> its CSRF token, forgotten after ``ttl``
    seconds unused (checked when used: no timer)."""

    MAX = 32

    def __init__(self, ttl: float = 12 * 3600, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._sessions: "collections.OrderedDict[str, Tuple[str, float]]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Tuple[str, str]:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[token] = (csrf, self._clock())
            while len(self._sessions) > self.MAX:
                self._sessions.popitem(last=False)
        return token, csrf

    def csrf(self, token: Optional[str]) -> Optional[str]:
        """The session's CSRF token if ``token`` is a live session (its use is noted), else None."""
        with self._lock:
            entry = self._sessions.get(token or "")
            if entry is None:
                return None
            if self._clock() - entry[1] > self.ttl:
                del self._sessions[token]
                return None
            self._sessions[token] = (entry[0], self._clock())
            self._sessions.move_to_end(token)
            return entry[0]

    def drop(self, token: Optional[str]) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()


class LoginLimiter:
    """At most ``attempts`` login attempts per client in ``window`` seconds, forgotten at the
    first success. An attempt is counted *before* its password is checked (``reserve``), so
    requests racing each other cannot get more checks than the limit. A client is an IPv4
    address, or an IPv6 /64 (what one household or one attacker holds)."""

    MAX_CLIENTS = 1024

    def __init__(self, attempts: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._attempts: Dict[str, List[float]] = {}
        self._lock = threading.Lock()

    def reserve(self, client: str) -> float:
        """Count an attempt by ``client`` and return 0 if it may be checked now; else the
        seconds until it may try again (nothing counted)."""
        key = _client_key(client)
        with self._lock:
            recent = self._recent(key)
            if len(recent) >= self.attempts:
                return max(0.0, recent[0] + self.window - self._clock())
            if len(self._attempts) > self.MAX_CLIENTS:
                self._attempts.pop(next(k for k in self._attempts if k != key))
            recent.append(self._clock())
            return 0.0

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._attempts.pop(_client_key(client), None)

    def _recent(self, key: str) -> List[float]:
        since = self._clock() - self.window
        recent = [t for t in self._attempts.get(key, ()) if t > since]
        self._attempts[key] = recent
        return recent


def _client_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address as its /64 network."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)



def read_password_hash() -> int:
    """``oemgateway --hash-password``: print the hash of a password read from the terminal
    (asked twice) or from one line of stdin; exit code 0, or 1 if they differ or are empty."""
    import getpass
    import sys
    if sys.stdin.isatty():
        password = getpass.getpass("Password for the web page: ")
        if getpass.getpass("Again: ") != password:
            print("oemgateway: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("oemgateway: an empty password is not allowed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0

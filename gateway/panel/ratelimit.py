"""Limits on attempts: sign-ins (:class:`SignInGuard`) and originations per agent
(:class:`SlidingWindowLimiter`).

Pure: the caller passes the time, so tests drive it without sleeping.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass


class SlidingWindowLimiter:
    """At most ``limit`` events per ``window`` seconds for each key; forgets idle keys."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._events: dict[Hashable, deque[float]] = {}

    def _live(self, key: Hashable, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._prune(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        events = self._live(key, now)
        if len(events) < self.limit:
            return 0.0
        return max(0.0, events[0] + self.window - now)

    def hit(self, key: Hashable, now: float) -> None:
        self._live(key, now).append(now)

    def take(self, key: Hashable, now: float) -> float:
        """Count an attempt if allowed: 0 when it was, else the seconds to wait (not counted)."""
        wait = self.retry_after(key, now)
        if wait == 0:
            self._events[key].append(now)
        return wait

    def reset(self, key: Hashable) -> None:
        self._events.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, ev in self._events.items() if not ev or ev[-1] <= now - self.window]:
            del self._events[key]


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class Backoff:
    """Failures per key: ``free`` of them cost nothing, then each one doubles the wait before
    the next attempt (``first``, 2·``first``, 4·``first``, ... at most ``cap`` seconds after the
    last failure). A key is forgotten ``cap`` seconds after its last failure."""

    def __init__(self, free: int, first: float, cap: float, max_keys: int = 100_000) -> None:
        self.free = free
        self.first = first
        self.cap = cap
        self.max_keys = max_keys
        self._keys: OrderedDict[Hashable, _Failures] = OrderedDict()

    def _get(self, key: Hashable, now: float) -> _Failures | None:
        f = self._keys.get(key)
        if f is not None and now - f.last >= self.cap:
            del self._keys[key]
            return None
        return f

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds before ``key`` may try again (0: now)."""
        f = self._get(key, now)
        if f is None or f.count < self.free:
            return 0.0
        delay = min(self.first * 2.0 ** (f.count - self.free), self.cap)
        return max(0.0, f.last + delay - now)

    def fail(self, key: Hashable, now: float) -> None:
        f = self._get(key, now)
        if f is None:
            if len(self._keys) >= self.max_keys:
                self._keys.popitem(last=False)  # the longest untouched key
            f = self._keys[key] = _Failures(0, now)
        f.count += 1
        f.last = now
        self._keys.move_to_end(key)

    def reset(self, key: Hashable) -> None:
        self._keys.pop(key, None)


class SignInGuard:
    """Failed panel sign-ins, limited per user name and per address separately.

    The rule (also in docs/api.md, "Sign-in limits"):

    * per user name **and** address: ``attempts`` failures are free, then each failure doubles
      the wait (``window``/10 first, at most 3·``window``); a success clears it;
    * per user name, from any address: 2·``attempts`` free failures, then the same backoff;
    * per address, for any user name: 6·``attempts`` free failures, then the same backoff;
    * a user name that signed in successfully from an address in the last ``trust_days`` is
      *known* there: the per-name and per-address limits do not apply to it from that address
      (the per-name-and-address one still does). So someone spraying names from an office NAT,
      or guessing one person's password from elsewhere, slows down only themselves and people
      signing in from that address for the first time; everyone who already signed in there
      gets in with the right password.

    While a limit applies the password is not even checked, so a locked-out guesser learns
    nothing. Memory only: after a restart every pair is unknown until it signs in again.
    """

    def __init__(
        self, attempts: int = 5, window: float = 300.0, *, trust_days: float = 30.0
    ) -> None:
        first, cap = window / 10, window * 3
        self.pair = Backoff(attempts, first, cap)
        self.name = Backoff(attempts * 2, first, cap)
        self.address = Backoff(attempts * 6, first, cap)
        self.trust_seconds = trust_days * 86400
        self.max_known = 100_000
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    def known(self, name: str, address: str, now: float) -> bool:
        at = self._known.get((name, address))
        return at is not None and now - at < self.trust_seconds

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds before ``name`` may try to sign in from ``address`` (0: now)."""
        wait = self.pair.wait((name, address), now)
        if not self.known(name, address, now):
            wait = max(wait, self.name.wait(name, now), self.address.wait(address, now))
        return wait

    def failed(self, name: str, address: str, now: float) -> None:
        self.pair.fail((name, address), now)
        self.name.fail(name, now)
        self.address.fail(address, now)

    def succeeded(self, name: str, address: str, now: float) -> None:
        # the address keeps its count: signing in as oneself must not reset a spray
        self.pair.reset((name, address))
        self.name.reset(name)
        self._known[(name, address)] = now
        self._known.move_to_end((name, address))
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)

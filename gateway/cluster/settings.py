"""The ``cluster:`` config section: several gateways, one owner per PBX link (docs/scale-out.md).

Absent, the gateway runs alone as it always has and needs no Redis. Present, each PBX's AMI
link runs only in the instance holding that PBX's lease in Redis.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

_INSTANCE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SCHEMES = ("redis", "rediss", "unix")
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*")


class ClusterSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Where the leases live, this instance's name, and the lease timings (seconds)."""

    # redis://[:password@]host:port/db, rediss:// for TLS, unix:///path/redis.sock
    redis_url: str = "redis://127.0.0.1:6379/0"
    # how /health and the other instances name this one; empty: <hostname>-<pid>
    instance: str = ""
    # a holder that stops renewing loses its PBX after this long (Redis expires the lease)
    lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=300)] = 4.0
    # how often the holder renews, and how often a standby asks whether the lease is free
    renew_seconds: Annotated[float, msgspec.Meta(gt=0, le=100)] = 1.25
    # the holder that cannot reach its PBX for this long lets another instance try
    link_grace_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 15.0
    # Redis keys: <prefix>:pbx:<name>:lease and <prefix>:pbx:<name>:fence
    key_prefix: str = "centralita"
    # a standby follows each PBX on an AMI session of its own (events only), so that the calls
    # that end while the PBX changes owner are logged by the new one (gateway/cluster/witness.py);
    # needs the store the instances share (store.url)
    witness: bool = True

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.redis_url)
            parts.port  # noqa: B018 (raises on a port that is not a number 0-65535)
            usable = parts.scheme in _SCHEMES and bool(parts.hostname or parts.scheme == "unix")
        except ValueError:
            usable = False
        if not usable:
            raise ValueError(
                "redis_url: expected redis://host:port/db, rediss://... or unix:///path, "
                f"found {mask_url(self.redis_url)!r}"
            )
        if self.instance and not _INSTANCE.fullmatch(self.instance):
            raise ValueError(
                "instance: expected 1-64 letters, digits, '_', '.', ':', '-', "
                f"found {self.instance!r}"
            )
        if not _KEY_PREFIX.fullmatch(self.key_prefix):
            raise ValueError(
                "key_prefix: expected 1-64 letters, digits, '_', '.', ':', '-', "
                f"found {self.key_prefix!r}"
            )
        # the holder stops its link once a renewal has been missing for lease - renew seconds
        # (before Redis frees the lease): that must leave room for a retry or two first
        if self.renew_seconds * 3 > self.lease_seconds:
            raise ValueError(
                "renew_seconds: expected at most a third of lease_seconds "
                f"({self.lease_seconds:g}), found {self.renew_seconds:g}"
            )

    @property
    def name(self) -> str:
        """This instance's name: ``instance``, or ``<hostname>-<pid>``."""
        return self.instance or default_instance()

    def __repr__(self) -> str:  # the URL may carry the Redis password
        return f"ClusterSettings(redis_url={mask_url(self.redis_url)!r}, instance={self.name!r})"


def default_instance() -> str:
    """``<hostname>-<pid>``: unique on a network of machines with distinct host names."""
    host = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname())[:50] or "host"
    return f"{host}-{os.getpid()}"


def mask_url(url: str) -> str:
    """The URL with any password in it (``:pass@``, ``?password=``) shown as ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if password:
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 address goes back in brackets
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}{port}"
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    if netloc == parts.netloc and query == parts.query:
        return url
    # by hand: urlunsplit would turn unix:///path into unix:/path
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")

"""The gateway's error tree. Every error says what went wrong in words a user can act on."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A config value is missing or wrong: names the key path, what was expected and found."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class AmiError(GatewayError):
    """The PBX refused an action or the link could not carry it."""


class AmiAuthError(AmiError):
    """Login was refused: wrong username or secret, or the peer is not allowed."""


class AmiActionTimeout(AmiError):
    """An action got no (complete) answer in time."""


class AmiNotConnected(AmiError):
    """The link to that PBX is down right now."""


class InvalidNumber(GatewayError):
    """A phone number could not be understood, or could inject into a dial string."""


class ConnectorError(GatewayError):
    """An external CRM failed or answered something we cannot use."""


class ConnectorTimeout(ConnectorError):
    """An external CRM did not answer within its time budget."""


class ApiError(GatewayError):
    """An HTTP API error with a stable ``error_id`` clients can match on."""

    def __init__(self, status: int, error_id: str, message: str, details: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message
        self.details = details

"""The browser side: the agent panel (``panel/``) and the status page, shipped as package data.

Nothing here is Python; the file makes ``web`` an installable package so a wheel carries the
panel's files next to ``gateway`` (``gateway.app.WEB_DIR``).
"""

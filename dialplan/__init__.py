"""Asterisk side of Centralita: dialplan snippets (``*.conf``) and the FastAGI service."""

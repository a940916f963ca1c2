"""The agent panel: sign-in, live pop-ups, presence, history, recordings and click-to-call.

``gateway.panel.setup.setup_panel(app, gateway)`` is all the application factory calls. This
package's ``__init__`` imports nothing, so the config can read ``panel.settings`` without
pulling in the web layer.
"""

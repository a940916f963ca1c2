"""Live push to the agents' browsers: the websocket hub and its wire messages."""

"""The simulated PBX: Asterisk 22 AMI over TCP with call streams taken from real captures.

``pbx.SimulatedPbx`` is the server (``centralita demo`` and the tests' peer),
``traffic.TrafficGenerator`` feeds it calls, ``scenarios``/``render`` are the pure call
renderers, and ``clock`` holds the real and manual clocks.
"""

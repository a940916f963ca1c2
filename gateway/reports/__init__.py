"""Reports (issue 14): the call center's and the sales team's numbers for any date range.

``model`` holds the query and the typed rows every report answers; ``calls`` and ``sales``
compute them from the store; ``api`` serves them under ``/api/v1/reports``.
"""

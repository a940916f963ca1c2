"""Write-back of finished calls to external CRMs, through a persistent outbox."""

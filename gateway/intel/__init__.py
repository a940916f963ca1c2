"""Customer intelligence: per-person metrics (RFM, lifetime value, churn risk, engagement, data
quality, next best interaction) computed from deals and the activity history, stored as rows
(``person_metrics``) the caller card reads with the rest of the card."""

"""velocast: forecasting hourly bike traffic at the City of Paris counters."""

"""Admin role: service layer (use cases), JSON API, web console, operator and user auth."""

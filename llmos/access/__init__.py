"""Who may do what, how much: API keys (hashed), scopes, rate limits with reservations, token
budgets, and usage accounting."""

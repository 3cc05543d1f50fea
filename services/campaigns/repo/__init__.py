"""Campaigns persistence, one module per aggregate. Every function takes the connection of
the caller's transaction, so a change that must be atomic (a build's last step, a lifecycle
transition with its history and audit) is one transaction however many repositories it
touches."""

"""The results explorer: runs, their config and their curves in one interactive page."""

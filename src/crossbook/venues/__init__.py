"""crossbook.venues: venue simulators behind the crossbook.routing.venue interface.

``InProcessVenue`` runs in the OMS's process (issue 4); the same books and background flow will sit
behind a FIX acceptor in ``crossbook venue`` (issue 5). See docs/venues.md.
"""
from crossbook.venues.simulator import BACKGROUND_ID_BASE, BACKGROUND_OWNER, BackgroundFlow, InProcessVenue

__all__ = ["BACKGROUND_ID_BASE", "BACKGROUND_OWNER", "BackgroundFlow", "InProcessVenue"]

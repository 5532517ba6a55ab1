"""crossbook.routing: the venue interface (``crossbook.routing.venue``); router policies and venue connectors come with issue 5."""

"""FIX engine: dictionary and validation, codec, sans-IO session, stores, transports."""

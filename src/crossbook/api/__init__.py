"""crossbook.api: the HTTP JSON API (docs/http-api.md) and the JSON views it shares with the CLI."""

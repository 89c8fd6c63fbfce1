"""Galley: engine, recipe runner and SDK. The SDK's public names are exported here."""

"""The ports: small Protocols, one per kind of infrastructure. They name no implementation."""

"""onex subcommands that the metadata stamping node contributes (declared as onex.commands entry points)."""

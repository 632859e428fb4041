"""The local control API used by the CLI and the terminal app."""

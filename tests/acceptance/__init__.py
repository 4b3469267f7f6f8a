"""End-to-end checks of the installed command line."""

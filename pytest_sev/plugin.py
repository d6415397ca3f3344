"""pytest11 entry point: registers options, hooks and fixtures."""

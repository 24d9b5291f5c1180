"""pytest fixtures for clearapi and its users' tests (emulator fixtures are added here)."""

"""Scene representations; each registers itself with the method registry."""

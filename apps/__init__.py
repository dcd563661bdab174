"""Command-line applications (installed as ``render3d.apps``)."""

"""The embedded demo scenes, shipped as package data (installed as ``render3d.assets``)."""

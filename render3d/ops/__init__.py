"""Differentiable ops: public functions, PyTorch references and backend dispatch."""

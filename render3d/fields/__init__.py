"""Neural fields shared by the implicit-surface methods (``occupancy``, ``sdf``) and DVR.

- :class:`FourierFeatures`: positional encoding / random Fourier features (seed §10.2.1).
- :class:`ImplicitField`: an MLP ``[N,3] -> [N]`` on Fourier features or on the hash grid,
  with an optional per-shape latent code input and the geometric (sphere) initialisation of
  IGR/SAL for signed distances.
"""
from render3d.fields.encodings import FourierFeatures
from render3d.fields.implicit import ImplicitField, field_gradient

__all__ = ["FourierFeatures", "ImplicitField", "field_gradient"]

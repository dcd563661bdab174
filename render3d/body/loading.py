"""One way to name a body model on the command line and in run files: ``procedural``,
``anny`` (with a phenotype) or the path of an SMPL-family ``.npz``/``.pkl`` file."""
from __future__ import annotations

from pathlib import Path

from render3d.body.model import BodyModel
from render3d.errors import ConfigError

BUILT_IN = ("anny", "procedural")


def load_body_model(spec: str, phenotype: dict | None = None) -> BodyModel:
    """The model named by ``spec`` (module doc); ``phenotype`` only applies to anny.

    Raises:
        ConfigError: a phenotype for a model that has none, anny missing.
        DataError: a missing or broken model file.
    """
    if phenotype and spec != "anny":
        raise ConfigError(f"--phenotype applies to the anny model only, not {spec!r}")
    if spec == "procedural":
        from render3d.body.procedural import procedural_body

        return procedural_body()
    if spec == "anny":
        from render3d.body.anny_model import from_anny

        return from_anny(phenotype)
    from render3d.body.smpl import load_smpl

    return load_smpl(Path(spec))

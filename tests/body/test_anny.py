"""The anny adapter (needs the optional extra ``body``; without it these tests are
deselected and the session header says so, see tests/conftest.py): FK + LBS on anny's arrays
reproduce anny's own posed vertices, shape directions move the mesh like the phenotype does,
keypoints and phenotype validation."""
import pytest
import torch

from render3d.body import from_anny
from render3d.body.anny_model import ANNY_TO_BODY, anny_instance, anny_pose_to_body, anny_rest
from render3d.errors import ConfigError
from render3d.ops.rotations import axis_angle_to_matrix

# The first anny.Anny() on a machine builds a cache for minutes; later ones take a second.
pytestmark = [pytest.mark.anny, pytest.mark.slow]


@pytest.mark.parametrize("phenotype", [{"gender": 0.1, "height": 0.8}, {"age": 0.95, "weight": 0.0, "muscle": 1.0}])
def test_reproduces_anny_posed_vertices(phenotype):
    model = anny_instance()
    body = from_anny(phenotype, shape=False)
    generator = torch.Generator().manual_seed(0)
    deltas = torch.eye(4, dtype=torch.float64).repeat(3, model.bone_count, 1, 1)
    # Strong random poses: about one radian per bone, anny's default parameterisation.
    deltas[..., :3, :3] = axis_angle_to_matrix(torch.randn(3, model.bone_count, 3, generator=generator,
                                                           dtype=torch.float64))
    deltas[:, 0, :3, 3] = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected = model(pose_parameters=deltas, phenotype_kwargs=body.phenotype)
        rotations, transl = anny_pose_to_body(body, expected["bone_poses"])
        ours = body(pose=rotations.float(), transl=transl.float())
    error = (ours.vertices.double() - expected["vertices"] @ ANNY_TO_BODY.T).norm(dim=-1).max()
    assert error < 1e-5  # metres; float32 arithmetic on a 1.7 m body gives about 1e-6


def test_shape_directions_follow_the_phenotype():
    body = from_anny({"height": 0.5})
    assert body.shape_labels == tuple(anny_instance().phenotype_labels)
    height = body.shape_labels.index("height")
    betas = torch.zeros(1, body.n_betas)
    betas[0, height] = 0.1
    with torch.no_grad():
        linear = body(betas=betas).vertices[0].double()
    exact, _ = anny_rest(anny_instance(), dict(body.phenotype, height=0.6))
    exact = (exact @ ANNY_TO_BODY.T).to(linear)
    moved = (exact - body.template.double()).norm(dim=-1).max()
    # A 0.1 step of the height phenotype moves vertices by centimetres; linearised within a millimetre.
    assert moved > 0.01 and (linear - exact).norm(dim=-1).max() < 1e-3


def test_keypoints_and_limits():
    body = from_anny(shape=False)
    points, present = body.keypoints(body(), "body25")
    assert bool(present.all())
    neck, nose = points[0, 1], points[0, 0]
    assert nose[1] > neck[1]  # y up
    assert len(body.bend_limits) == 4


def test_bad_phenotype_is_named():
    with pytest.raises(ConfigError, match="unknown key 'shoe_size'"):
        from_anny({"shoe_size": 0.5})
    with pytest.raises(ConfigError, match="age must be a number in"):
        from_anny({"age": 2})

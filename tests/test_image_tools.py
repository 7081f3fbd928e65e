"""The CPU image tools, run through the registry as the agent runs them.

Photos come from scikit-image's bundled data (no download): `astronaut` is a portrait with one
frontal face.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import skimage.data

from tools.registry import default_registry
from tools.workspace import Workspace

OUTPUT = re.compile(r"^(image/[a-z]{8}\.png)")


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])


def shapes() -> np.ndarray:
    """A synthetic scene: flat shapes, straight lines and mild noise."""
    image = np.full((120, 160, 3), 40, np.uint8)
    cv2.rectangle(image, (20, 20), (70, 90), (200, 180, 60), -1)
    cv2.circle(image, (115, 60), 30, (30, 90, 220), -1)
    cv2.line(image, (0, 110), (159, 100), (255, 255, 255), 2)
    noise = np.random.default_rng(0).integers(-8, 9, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def run(registry, ws, tool: str, action_input: str) -> str:
    return registry.get(tool).run(action_input, ws)


def output_of(observation: str) -> str:
    match = OUTPUT.match(observation)
    assert match, f"observation does not start with an output image: {observation!r}"
    return match.group(1)


def test_edge_detection_is_canny_100_200(registry, ws):
    image = shapes()
    source = ws.save_image(image)
    observation = run(registry, ws, "Edge Detection On Image", source)
    assert observation == output_of(observation) != source
    edges = ws.load_image(observation)
    expected = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 100, 200)
    np.testing.assert_array_equal(edges[:, :, 0], expected)
    assert expected.any()


def test_line_detection_draws_the_straight_lines(registry, ws):
    image = np.zeros((100, 100, 3), np.uint8)
    cv2.line(image, (10, 20), (90, 20), (255, 255, 255), 3)
    cv2.line(image, (50, 30), (50, 95), (255, 255, 255), 3)
    observation = run(registry, ws, "Line Detection On Image", ws.save_image(image))
    assert "classical approximation of M-LSD" in observation
    lines = ws.load_image(output_of(observation))[:, :, 0]
    assert lines.shape == (100, 100)
    assert lines[15:26, 30:70].any() and lines[40:80, 45:56].any()
    assert not lines[60:, :30].any(), "nothing drawn where the image is empty"


@pytest.mark.parametrize("tool, label", [("Hed Detection On Image", "approximation of HED"), ("Sketch Detection On Image", "scribble")])
def test_boundary_tools_are_labelled_approximations(registry, ws, tool, label):
    observation = run(registry, ws, tool, ws.save_image(shapes()))
    assert "classical approximation" in observation and label in observation
    result = ws.load_image(output_of(observation))
    assert result.shape == shapes().shape and result.any()


def test_segmentation_colours_several_regions(registry, ws, astronaut):
    observation = run(registry, ws, "Segment the Image", ws.save_image(astronaut))
    assert "not SAM" in observation
    segmented = ws.load_image(output_of(observation))
    assert segmented.shape == astronaut.shape
    assert len(np.unique(segmented.reshape(-1, 3), axis=0)) >= 5


def test_detect_face_finds_the_astronaut(registry, ws, astronaut):
    observation = run(registry, ws, "Detect Face", ws.save_image(astronaut))
    match = re.match(r"Found 1 face at \[x, y, width, height\] \[(\d+), (\d+), (\d+), (\d+)\]; boxes drawn in (image/[a-z]{8}\.png)", observation)
    assert match, observation
    x, y, w, h = map(int, match.groups()[:4])
    assert x < 220 < x + w and y < 110 < y + h, "the box covers the face's centre (about x=220, y=110)"
    assert ws.load_image(match.group(5)).shape == astronaut.shape


def test_detect_face_on_blank_image_says_none_and_writes_nothing(registry, ws):
    source = ws.save_image(np.full((200, 200, 3), 128, np.uint8))
    observation = run(registry, ws, "Detect Face", source)
    assert observation.startswith("No face found")
    assert [p.name for p in (ws.root / "image").iterdir()] == [source.split("/")[1]]


def test_crop_face_and_refuse_other_objects(registry, ws, astronaut):
    source = ws.save_image(astronaut)
    crop = ws.load_image(output_of(run(registry, ws, "Crop the Given Object", f"{source}, the astronaut's face")))
    assert 90 < crop.shape[0] < 250 and 90 < crop.shape[1] < 250
    files = sorted((ws.root / "image").iterdir())
    observation = run(registry, ws, "Crop the Given Object", f"{source}, the rocket")
    assert observation.startswith("unavailable: needs an open-vocabulary detector")
    assert sorted((ws.root / "image").iterdir()) == files
    assert run(registry, ws, "Crop the Given Object", source).startswith("error: This tool needs two inputs")


def quality(observation: str) -> int:
    return int(re.match(r"Quality score (\d+)/100", observation).group(1))


def test_quality_orders_sharp_above_blurred_and_dark(registry, ws, astronaut):
    sharp = run(registry, ws, "Assess the Image Quality", ws.save_image(astronaut))
    blurred = run(registry, ws, "Assess the Image Quality", ws.save_image(cv2.GaussianBlur(astronaut, (0, 0), 3)))
    dark = run(registry, ws, "Assess the Image Quality", ws.save_image((astronaut * 0.2).astype(np.uint8)))
    assert quality(sharp) > quality(blurred)
    assert quality(sharp) > quality(dark)
    assert "variance of the Laplacian" in sharp and "not a learned IQA model" in sharp


def test_every_cpu_tool_copes_with_tiny_images(registry, ws):
    for shape in [(1, 1, 3), (2, 3, 3), (30, 1, 3)]:
        source = ws.save_image(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
        for t in registry:
            if t.available:
                observation = t.run(f"{source}, face", ws)
                assert "failed" not in observation, (shape, t.name, observation)


def test_super_resolution_doubles_the_size(registry, ws):
    image = shapes()
    observation = run(registry, ws, "Image Super-Resolution", ws.save_image(image))
    assert "Lanczos x2" in observation
    assert ws.load_image(output_of(observation)).shape == (240, 320, 3)


def test_super_resolution_refuses_results_over_the_pixel_limit(registry, tmp_path):
    ws = Workspace(tmp_path / "small", max_pixels=30_000)
    source = ws.save_image(shapes())  # 19,200 pixels: allowed in, but 76,800 out is not
    assert run(registry, ws, "Image Super-Resolution", source).startswith("error: A 160x120 image doubled")


@pytest.mark.parametrize("tool", ["Edge Detection On Image", "Detect Face", "Assess the Image Quality"])
def test_bad_inputs_become_error_observations(registry, ws, tool):
    (ws.root / "notes.png").write_text("hello")
    assert "outside the workspace" in run(registry, ws, tool, "../x.png")
    assert "outside the workspace" in run(registry, ws, tool, "/etc/passwd")
    assert "not a readable image" in run(registry, ws, tool, "notes.png")
    assert run(registry, ws, tool, "image/missing.png").startswith("error: There is no file")


def test_quoted_paths_and_extra_arguments_are_tolerated(registry, ws):
    source = ws.save_image(shapes())
    assert OUTPUT.match(run(registry, ws, "Edge Detection On Image", f" '{source}' "))
    assert OUTPUT.match(run(registry, ws, "Edge Detection On Image", f"{source}, please"))

"""The GPT4Tools tools that run honestly on a CPU, without a neural model.

Each tool is a function `(action_input, workspace) -> observation`, following the GPT4Tools
conventions: the action input is the image path, or "image_path, text" for two-argument tools; the
observation is the output image's workspace path, or text. Only Edge Detection is the original
algorithm (Visual ChatGPT runs `cv2.Canny(image, 100, 200)`); the others stand in for a network
with a classical method and say so in their observation, so neither the agent nor the user mistakes
them for the model the benchmark had in mind:

    Line Detection      M-LSD            -> OpenCV's LSD line-segment detector
    Hed Detection       HED network      -> multi-scale Gaussian gradient magnitude
    Sketch Detection    HED scribble     -> the same gradients, thresholded (Otsu) and thinned
    Segment the Image   SAM              -> Felzenszwalb-Huttenlocher graph segmentation
    Detect Face / Crop  face detector    -> OpenCV's LBP frontal-face cascade (shipped in scikit-image:
                                            OpenCV 5 wheels no longer bundle cascades)
    Image Quality       learned IQA      -> sharpness, contrast, exposure and noise measures
    Super-Resolution    learned SR       -> Lanczos x2 and an unsharp mask

Tools raise `ValueError` (a `WorkspaceError` for paths and files) with a user-facing message on a bad
input; `Tool.run` turns it into an "error: ..." observation.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Callable

import cv2
import numpy as np
import skimage.data
import skimage.feature
import skimage.filters
import skimage.morphology
import skimage.segmentation

from .unavailable import GROUNDING, unavailable_message
from .workspace import Workspace

WORK_SIDE = 512  # slow classical methods run at this longest side, so their cost does not grow with the photo


def image_argument(action_input: str) -> str:
    """The image path of an action input: its first comma-separated field, without quotes."""
    return action_input.split(",", 1)[0].strip().strip("'\"`").strip()


def image_and_text(action_input: str, what: str) -> tuple[str, str]:
    """Split "image_path, text" at the first comma (the text itself may contain commas)."""
    path, _, text = action_input.partition(",")
    text = text.strip().strip("'\"`").strip()
    if not text:
        raise ValueError(f"This tool needs two inputs separated by a comma: the image path and {what}, e.g. 'image/abcdefgh.png, face'.")
    return image_argument(path), text


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _shrink(image: np.ndarray, longest: int = WORK_SIDE) -> tuple[np.ndarray, float]:
    """The image at most `longest` pixels on its longest side, and the factor applied."""
    scale = min(1.0, longest / max(image.shape[:2]))
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


# Edges and lines --------------------------------------------------------------------------------


def edge_detection(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    return workspace.save_image(cv2.Canny(_gray(image), 100, 200))


def line_detection(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    segments = cv2.createLineSegmentDetector().detect(_gray(image))[0]
    segments = np.zeros((0, 4)) if segments is None else segments.reshape(-1, 4)
    # M-LSD reports the salient straight lines; LSD also returns texture fragments, which are short.
    min_length = 0.02 * float(np.hypot(*image.shape[:2]))
    lengths = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
    canvas = np.zeros(image.shape[:2], np.uint8)
    kept = segments[lengths >= min_length]
    for x0, y0, x1, y1 in np.round(kept).astype(int):
        cv2.line(canvas, (x0, y0), (x1, y1), 255, 1, cv2.LINE_AA)
    out = workspace.save_image(canvas)
    return f"{out} (classical approximation of M-LSD: {len(kept)} straight segments from OpenCV's LSD detector)"


def soft_boundaries(image: np.ndarray) -> np.ndarray:
    """Boundary strength in [0, 1]: Gaussian gradient magnitude averaged over three scales."""
    gray = _gray(image).astype(np.float32)
    maps = []
    for sigma in (1.0, 2.0, 4.0):
        smooth = cv2.GaussianBlur(gray, (0, 0), sigma)
        magnitude = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
        maps.append(magnitude / max(float(np.percentile(magnitude, 99)), 1e-6))
    return np.clip(np.mean(maps, axis=0), 0.0, 1.0)


def hed_detection(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    out = workspace.save_image(np.round(soft_boundaries(image) * 255).astype(np.uint8))
    return f"{out} (classical approximation of HED: soft boundaries from multi-scale image gradients)"


def sketch_detection(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    soft = soft_boundaries(image)
    strokes = skimage.morphology.skeletonize(soft > skimage.filters.threshold_otsu(soft))
    scribble = cv2.dilate(strokes.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    out = workspace.save_image(scribble)
    return f"{out} (classical approximation of a HED scribble: thresholded, thinned image gradients)"


# Segmentation -----------------------------------------------------------------------------------


def segment_image(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    small, _ = _shrink(image)
    area = small.shape[0] * small.shape[1]
    labels = skimage.segmentation.felzenszwalb(small[:, :, ::-1], scale=300, sigma=0.8, min_size=max(20, area // 1000))
    labels = cv2.resize(labels.astype(np.int32), image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    count = int(labels.max()) + 1
    palette = np.random.default_rng(0).integers(0, 256, size=(count, 3), dtype=np.uint8)
    out = workspace.save_image(palette[labels])
    return f"{out} (classical segmentation, not SAM: {count} regions from Felzenszwalb graph segmentation, one colour each)"


# Faces ------------------------------------------------------------------------------------------

FACE_DETECTOR = "OpenCV's LBP frontal-face cascade; it finds roughly frontal faces at least a tenth of the image's shorter side"


@cache
def _face_cascade() -> skimage.feature.Cascade:
    return skimage.feature.Cascade(skimage.data.lbp_frontal_face_cascade_filename())


def find_faces(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, width, height) in the image's pixels, left to right."""
    small, scale = _shrink(_gray(image), 640)
    side = max(24, min(small.shape) // 10)
    found = _face_cascade().detect_multi_scale(
        img=small, scale_factor=1.2, step_ratio=1, min_size=(side, side), max_size=small.shape
    )
    boxes = [tuple(round(v / scale) for v in (f["c"], f["r"], f["width"], f["height"])) for f in found]
    return sorted(boxes)


def detect_face(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    boxes = find_faces(image)
    if not boxes:
        return f"No face found (detector: {FACE_DETECTOR})."
    annotated = image.copy()
    for x, y, w, h in boxes:
        cv2.rectangle(annotated, (x, y), (x + w, y + h), (0, 255, 0), max(2, min(image.shape[:2]) // 200))
    out = workspace.save_image(annotated)
    listed = ", ".join(f"[{x}, {y}, {w}, {h}]" for x, y, w, h in boxes)
    noun = "face" if len(boxes) == 1 else "faces"
    return f"Found {len(boxes)} {noun} at [x, y, width, height] {listed}; boxes drawn in {out} (detector: {FACE_DETECTOR})."


def crop_object(action_input: str, workspace: Workspace) -> str:
    path, target = image_and_text(action_input, "the object to crop")
    if not re.search(r"\bfaces?\b", target, re.IGNORECASE):
        return unavailable_message(f"{GROUNDING} to find '{target}'") + " Only faces can be cropped here."
    image = workspace.load_image(path)
    boxes = find_faces(image)
    if not boxes:
        return f"No face found to crop (detector: {FACE_DETECTOR})."
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    margin = round(0.25 * max(w, h))
    crop = image[max(0, y - margin) : y + h + margin, max(0, x - margin) : x + w + margin]
    out = workspace.save_image(crop)
    return f"{out} (the largest of the {len(boxes)} face(s) found by OpenCV's LBP frontal-face cascade, with a margin)"


# Quality and resolution -------------------------------------------------------------------------


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkaer's (1996) noise estimate, over the 90% least-edgy pixels (Tai and Yang, 2008)."""
    gray = gray.astype(np.float64)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    response = np.abs(cv2.filter2D(gray, -1, kernel))[1:-1, 1:-1]
    gradient = cv2.magnitude(cv2.Sobel(gray, cv2.CV_64F, 1, 0), cv2.Sobel(gray, cv2.CV_64F, 0, 1))[1:-1, 1:-1]
    flat = gradient <= np.percentile(gradient, 90)
    return float(np.sqrt(np.pi / 2) * response[flat].mean() / 6)


def assess_quality(action_input: str, workspace: Workspace) -> str:
    # Measured at a fixed display size, so the score does not depend on the photo's resolution.
    gray, _ = _shrink(_gray(workspace.load_image(image_argument(action_input))))
    if min(gray.shape) < 8:
        raise ValueError(f"A {gray.shape[1]}x{gray.shape[0]} image is too small to assess; it needs at least 8x8 pixels.")
    laplacian_var = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    std, mean = float(gray.std()), float(gray.mean())
    clipped = float(np.mean((gray <= 5) | (gray >= 250)))
    sigma = noise_sigma(gray)
    parts = {
        "sharpness": laplacian_var / (laplacian_var + 100.0),  # 0.5 at the usual blur threshold of 100
        "contrast": min(1.0, std / 60.0),
        "exposure": (1.0 - abs(mean - 127.5) / 127.5) * (1.0 - clipped),
        "noise": 1.0 / (1.0 + (sigma / 5.0) ** 2),  # 0.5 at a noise sigma of 5 grey levels
    }
    weights = {"sharpness": 0.4, "contrast": 0.2, "exposure": 0.2, "noise": 0.2}
    score = round(100 * sum(weights[k] * parts[k] for k in parts))
    return (
        f"Quality score {score}/100 (higher is better; a no-reference heuristic, not a learned IQA model): "
        f"sharpness {parts['sharpness']:.2f} (variance of the Laplacian {laplacian_var:.0f}), "
        f"contrast {parts['contrast']:.2f} (RMS contrast {std:.1f}), "
        f"exposure {parts['exposure']:.2f} (mean brightness {mean:.0f}/255, {100 * clipped:.1f}% clipped), "
        f"noise {parts['noise']:.2f} (estimated noise sigma {sigma:.1f}); weights 0.4/0.2/0.2/0.2."
    )


def super_resolution(action_input: str, workspace: Workspace) -> str:
    image = workspace.load_image(image_argument(action_input))
    height, width = image.shape[:2]
    if 4 * height * width > workspace.max_pixels:
        raise ValueError(f"A {width}x{height} image doubled would exceed the {workspace.max_pixels:,} pixels allowed.")
    upscaled = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LANCZOS4)
    sharpened = cv2.addWeighted(upscaled, 1.5, cv2.GaussianBlur(upscaled, (0, 0), 1.0), -0.5, 0)
    out = workspace.save_image(sharpened)
    return (
        f"{out} (classical upscaling, not a learned super-resolution model: Lanczos x2 and an unsharp mask, "
        f"{width}x{height} to {2 * width}x{2 * height})"
    )


IMPLEMENTATIONS: dict[str, Callable[[str, Workspace], str]] = {
    "Edge Detection On Image": edge_detection,
    "Line Detection On Image": line_detection,
    "Hed Detection On Image": hed_detection,
    "Sketch Detection On Image": sketch_detection,
    "Segment the Image": segment_image,
    "Detect Face": detect_face,
    "Crop the Given Object": crop_object,
    "Assess the Image Quality": assess_quality,
    "Image Super-Resolution": super_resolution,
}

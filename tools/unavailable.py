"""The GPT4Tools tools that need a neural model this project does not ship, and which model.

Such a tool still belongs to the registry (the model must be able to call it, and the benchmark
names it), but running it answers `unavailable: needs <model>` instead of an invented result, and
touches no file. The models named are the ones GPT4Tools / Visual ChatGPT use for each tool; a user
who has one can register a real implementation under the same name (`ToolRegistry.register(...,
replace=True)`).
"""

from __future__ import annotations

from typing import Callable

CONTROLNET = "ControlNet ({}) with Stable Diffusion v1.5"
GROUNDING = "an open-vocabulary detector (Grounding DINO)"

NEEDED_MODEL: dict[str, str] = {
    "Detect the Give Object": GROUNDING,
    "Get Photo Description": "an image-captioning model (BLIP, Salesforce/blip-image-captioning-base)",
    "Generate Image From User Input Text": "a text-to-image model (Stable Diffusion v1.5)",
    "Generate Image Condition On Canny Image": CONTROLNET.format("lllyasviel/sd-controlnet-canny"),
    "Predict Depth On Image": "a monocular depth model (DPT, Intel/dpt-large)",
    "Generate Image Condition On Depth": CONTROLNET.format("lllyasviel/sd-controlnet-depth"),
    "Answer Question About The Image": "a visual question-answering model (BLIP VQA, Salesforce/blip-vqa-base)",
    "Instruct Image Using Text": "an instruction image-editing model (InstructPix2Pix, timbrooks/instruct-pix2pix)",
    "Generate Image Condition On Sketch Image": CONTROLNET.format("lllyasviel/sd-controlnet-scribble"),
    "Generate Image Condition On Segmentations": CONTROLNET.format("lllyasviel/sd-controlnet-seg"),
    "Pose Detection On Image": "a human-pose model (OpenPose)",
    "Generate Image Condition On Pose Image": CONTROLNET.format("lllyasviel/sd-controlnet-openpose"),
    "Generate Image Condition On Soft Hed Boundary Image": CONTROLNET.format("lllyasviel/sd-controlnet-hed"),
    "Predict Normal Map On Image": "a monocular depth model to derive normals from (DPT, Intel/dpt-hybrid-midas)",
    "Generate Image Condition On Normal Map": CONTROLNET.format("lllyasviel/sd-controlnet-normal"),
    "Segment the given object": f"{GROUNDING} and Segment Anything (SAM)",
    "Remove Something From The Photo": "a text-prompted segmenter (CLIPSeg) and an inpainting model (Stable Diffusion inpainting)",
    "Replace Something From The Photo": "a text-prompted segmenter (CLIPSeg) and an inpainting model (Stable Diffusion inpainting)",
    "Recognize Face": "a face-recognition model (e.g. SFace) and a gallery of known people",
    "Text Detection On Image": "an OCR model (text detection and recognition, e.g. PaddleOCR)",
    "Generate 3D Asset From User Input Text": "a text-to-3D model (Shap-E)",
    "Detection": "an object detector (e.g. DETR, facebook/detr-resnet-50)",
}


def unavailable_message(model: str) -> str:
    return f"unavailable: needs {model}, which is not installed on this machine."


def unavailable(model: str) -> Callable[[str, object], str]:
    """A tool function that only says which model it lacks; it reads and writes nothing."""
    message = unavailable_message(model)

    def run(action_input: str, workspace: object) -> str:
        return message

    return run

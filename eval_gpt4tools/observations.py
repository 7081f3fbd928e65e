"""Realistic tool observations for the training traces, in place of GPT4Tools' placeholders.

GPT4Tools writes a text tool's observation as a placeholder (`[output_from_caption_tool]`), and the
final answer repeats it. A model trained on that answers "[output from the tool]" even after a real
tool has run. With `build-data --realistic-observations` each text observation is written the way a
tool would answer for that sample: the caption for a captioner, boxes for a detector, an answer that
fits the question for visual question answering, a value for an analysis, a short text for a text
tool. Image tools keep "Result saved as <path>", which is what GPT4Tools' image tools return.

The writer draws from its own random stream, so a file built with it holds the same requests, tool
lists and calls as one built without it, seed for seed; only the observations (and the answers that
repeat them) differ.
"""

from __future__ import annotations

import random

from .vocabulary import ACTIVITIES, ADJECTIVES, OBJECTS, SCENES

COLORS = ("red", "blue", "green", "white", "black", "grey", "brown", "yellow", "orange", "dark blue", "light green")
WEATHER = ("It is sunny with a clear sky.", "It is cloudy.", "It looks rainy.", "It is snowing.", "It is a bright, dry day.")
TIMES_OF_DAY = ("It is daytime, around noon.", "It is early morning.", "It is late afternoon.", "It is evening, near sunset.", "It is night.")
# A value per analysis noun's family, so "The dominant color ..." gets a colour and "The season ..." a season.
ANALYSIS_VALUES = {
    "color": COLORS, "palette": COLORS, "weather": ("sunny", "cloudy", "rainy", "snowy", "foggy"),
    "time of day": ("morning", "noon", "afternoon", "evening", "night"), "season": ("spring", "summer", "autumn", "winter"),
    "level": ("low", "medium", "high"), "angle": ("eye level", "high angle", "low angle", "bird's-eye view"),
    "orientation": ("landscape", "portrait", "rotated 90 degrees"), "symmetry": ("high", "moderate", "low"),
}
TEXT_RESULTS = (
    "{Topic}: a short summary in three sentences.", "Found 3 results about {topic}; the first says it is widely discussed.",
    "Done for \"{topic}\".", "{Topic}, written out in full.",
)


class ObservationWriter:
    def __init__(self, seed: int):
        self.rng = random.Random(f"observations-{seed}")  # its own stream: the sample draws stay as they were

    def write(self, tool: dict, slots) -> str | None:
        """The observation of `tool` for a sample's `slots`; None for image tools (a saved path)."""
        kind, concept = tool["observation"], tool.get("concept", tool["name"])
        if kind == "image_path":
            return None
        if kind == "[output_from_caption_tool]":
            return slots.caption.rstrip(".")
        if kind == "[output_from_vqa_tool]":
            return self.answer(slots)
        if kind == "[output_from_detection_tool]" or concept.startswith("object:"):
            return self.boxes(slots.object)
        if concept.startswith("analysis:"):
            return self.analysis(concept.split(":", 1)[1], slots)
        topic = slots.topic or slots.desc
        return self.rng.choice(TEXT_RESULTS).format(topic=topic, Topic=topic[:1].upper() + topic[1:])

    def boxes(self, noun: str) -> str:
        count = self.rng.choice((1, 1, 2, 3))
        boxes = []
        for _ in range(count):
            x, y = self.rng.randrange(0, 400), self.rng.randrange(0, 300)
            boxes.append(f"[{x}, {y}, {self.rng.randrange(20, 240)}, {self.rng.randrange(20, 200)}]")
        return f"Found {count} {noun} at [x, y, width, height] {', '.join(boxes)}"

    def analysis(self, noun: str, slots) -> str:
        values = next((v for key, v in ANALYSIS_VALUES.items() if key in noun), None)
        value = self.rng.choice(values) if values else f"{self.rng.choice(ADJECTIVES)} {slots.object}"
        return f"The {noun} of the image is {value}"

    def answer(self, slots) -> str:
        """An answer that fits the sample's question (vocabulary.QUESTIONS_ABOUT_IMAGE)."""
        question, obj, rng = slots.question, slots.object, self.rng
        if question.startswith("what color"):
            return f"The {obj} is {rng.choice(COLORS)}."
        if question.startswith("how many"):
            return f"There are {rng.randrange(0, 6)} people in the picture."
        if question.startswith("what is the weather"):
            return rng.choice(WEATHER)
        if question.startswith("where is"):
            return f"The {obj} is {rng.choice(SCENES)}."
        if question.startswith("what is next to"):
            return f"A {rng.choice([o for o in OBJECTS if o != obj])} is next to the {obj}."
        if question.startswith("is there"):
            return f"Yes, there is a {obj} in the picture." if rng.random() < 0.7 else f"No, there is no {obj} in the picture."
        if question.startswith("what is the background"):
            return f"The background is {rng.choice(COLORS)}."
        if question.startswith("what time"):
            return rng.choice(TIMES_OF_DAY)
        if question.startswith("what is the"):
            return f"The {obj} is {rng.choice(ACTIVITIES)} {rng.choice(SCENES)}."
        return slots.caption

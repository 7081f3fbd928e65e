"""Build GPT4Tools-style training data for the 23 seen tools, the way the authors built theirs.

Kinds of sample (gpt4tools.md):
    tool      one tool call: gold tool + distractors (2-5 tools, shuffled), image turn, request, trace
    two_step  a tool with a prerequisite (e.g. canny image → image from canny): two calls in a row
    negative  a general question under a random tool list, answered "No" + "AI: <real answer>"
    context   a tool/two-step conversation cut at a random assistant turn: the steps so far follow
              "Let's think step by step." with "Observation: ..." lines; the target is the next turn

Requests are varied: each tool's "like:" phrases from its description seed templates, combined with
openers, many objects, scenes and captions. Negative answers are written by the default instruct model
(greedy, batched), so they are real answers. The same seed gives the same file.
"""

from __future__ import annotations

import dataclasses
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

from tools import build_prompt, image_turn, seen_tools, split_prompt
from tools.gpt4tools_format import answer_text, step_text, tool_call_text

from .observations import ObservationWriter
from .synthetic_tools import TEXT_TOPICS, synthetic_tools
from .vocabulary import (
    ACTIVITIES, ADJECTIVES, GENERAL_QUESTION_TEMPLATES, GENERAL_TOPICS, OBJECTS, QUESTIONS_ABOUT_IMAGE, SCENES,
    STANDALONE_QUESTIONS, STYLES,
)

KIND_WEIGHTS = {"tool": 0.45, "two_step": 0.2, "negative": 0.15, "context": 0.2}
IMAGE_DIRS = ("image/", "images/", "examples/", "cache/", "")
OPENERS = ("", "Please ", "Could you ", "Can you ", "I want you to ", "I'd like you to ", "Help me ")
IMAGE_WORDS = ("this image", "the image", "this picture", "the photo", "this photo", "the picture")
SEEN_GOLD_SHARE = 0.4
# How users and LangChain callers bring in an image (natural conversations, issue 14 item 3).
INLINE_INTROS = (
    "Here is an image named {image}. ", "Here is {image}. ", "I uploaded {image}. ", "Look at {image}. ",
    "This is {image}. ", "{image}: ", "I have a picture called {image}. ",
)
IMAGE_INTRO_TURNS = (
    ("Here is {image}.", "Got it. What would you like me to do with {image}?"),
    ("I have a photo at {image}.", "Thanks, I can work with {image}."),
    ("This is {image}: {caption}", "OK, I have {image}."),
    ("Take a look at {image}.", "Sure. What should I do with it?"),
)
CHAT_TURNS = (
    ("Hi!", "Hello! How can I help you today?"), ("Thanks.", "You're welcome."),
    ("Can you help me with some pictures?", "Of course. Send me an image and tell me what you need."),
    ("Good morning.", "Good morning! What can I do for you?"),
)
# Requests for tools whose description has no "like:" examples, or whose examples need an argument.
EXTRA_REQUESTS = {
    "Detect the Give Object": ("detect the {object} in {image}", "find the {object} in {image}", "where is the {object} in {image}"),
    "Get Photo Description": ("describe {image}", "what is inside {image}", "tell me what you see in {image}", "give me a caption for {image}"),
    "Generate Image From User Input Text": ("generate an image of a {desc}", "draw a picture of a {desc}", "create an image showing a {desc}"),
    "Answer Question About The Image": ("look at {image} and tell me {question}", "{question} in {image}", "answer this about {image}: {question}"),
    "Instruct Image Using Text": ("{style}", "edit {image}: {style}", "{style} for {image}"),
    "Generate Image Condition On Sketch Image": ("generate a real image of a {desc} from the sketch of {image}", "turn the scribble of {image} into a real image of a {desc}"),
    "Segment the given object": ("segment the {object} in {image}", "can you segment the {object} for me"),
    "Remove Something From The Photo": ("remove the {object} from {image}", "erase the {object} in {image}", "get rid of the {object} in {image}"),
    "Replace Something From The Photo": ("replace the {object} with a {object2} in {image}", "swap the {object} in {image} for a {object2}"),
}
# What a conditional generation's text argument is: the user's description of the new image.
TEXT_ARGUMENT = {
    "Detect the Give Object": "object", "Segment the given object": "object", "Remove Something From The Photo": "object",
    "Answer Question About The Image": "question", "Instruct Image Using Text": "style", "Generate Image From User Input Text": "desc",
}


@dataclass(frozen=True)
class Slots:
    image: str
    caption: str
    object: str
    object2: str
    desc: str
    question: str
    style: str
    topic: str = ""


def like_phrases(description: str) -> list[str]:
    """The example requests in a tool description: the text after "like:" split on "or"."""
    if "like:" not in description:
        return []
    examples = description.split("like:", 1)[1].split("The input", 1)[0]
    phrases = [p.strip(" .,") for p in re.split(r",?\s*\bor\b\s*|,", examples)]
    return [p for p in phrases if len(p.split()) >= 2]


def request_templates(tool: dict) -> list[str]:
    templates = list(EXTRA_REQUESTS.get(tool["name"], ()))
    for phrase in like_phrases(tool["description"]):
        phrase = re.sub(r"\b(this|the) (image|picture|photo|figure)\b", "{image}", phrase)
        phrase = re.sub(r"\ba (object|human) or something\b", "{desc}", phrase)
        phrase = phrase.replace("the cat", "the {object}").replace("an obeject", "the {object}")
        templates.append(phrase)
    return templates


class SampleBuilder:
    def __init__(
        self, seed: int, answer_questions: Callable[[list[str]], list[str]], tool_sets: int | None = None,
        synthetic: bool = False, natural_share: float = 0.0, realistic_observations: bool = False,
        unseen_gold: bool = False,
    ):
        if unseen_gold and not synthetic:
            raise ValueError("unseen_gold draws gold tools from the synthetic tools; give synthetic=True too.")
        self.rng = random.Random(seed)
        # Text tools' observations written as a tool would answer (observations.py), not GPT4Tools' placeholders.
        self.observations = ObservationWriter(seed) if realistic_observations else None
        # At most `tool_sets` distinct tool lists (None: a fresh list per sample). A pool makes many
        # samples share one system prompt, so a frozen cloud LM reads each distinct prompt only once.
        self.tool_sets = tool_sets
        self.tool_set_pool: list[list[str]] = []
        self.tools = {t["name"]: t for t in seen_tools()}
        self.seen_names = list(self.tools)
        # `synthetic`: the few hundred composed tools join the 23 (synthetic_tools.py); a gold tool is a
        # seen one with probability SEEN_GOLD_SHARE, so both kinds are learnt.
        self.synthetic = synthetic
        if synthetic:
            self.tools.update((t["name"], t) for t in synthetic_tools())
        # `natural_share`: the share of samples whose conversation is written as users and LangChain
        # write it (image path inside the request, several turns, no "Received." turn).
        self.natural_share = natural_share
        # `unseen_gold`: laid out like the GPT4Tools unseen-tool test set, for a development set: a tool
        # row's gold tool is a synthetic one (the shipped generator never saw them) and its distractors
        # are seen tools, the ones the edge model learnt to name.
        self.unseen_gold = unseen_gold
        self.answer_questions = answer_questions
        self.templates = {name: list(tool.get("requests") or request_templates(tool)) for name, tool in self.tools.items()}

    def concept(self, name: str) -> str:
        return self.tools[name].get("concept", name)

    # ---- random pieces -------------------------------------------------------------------------
    def image_path(self) -> str:
        return self.rng.choice(IMAGE_DIRS) + "".join(self.rng.choices(string.ascii_lowercase, k=8)) + ".png"

    def slots(self) -> Slots:
        rng = self.rng
        obj, obj2 = rng.sample(OBJECTS, 2)
        caption = f"A {rng.choice(ADJECTIVES)} {obj} {rng.choice(ACTIVITIES)} {rng.choice(SCENES)}."
        if rng.random() < 0.5:
            caption += f" There is also a {obj2} {rng.choice(SCENES)}."
        return Slots(
            image=rng.choice(IMAGE_WORDS), caption=caption, object=obj, object2=rng.choice([o for o in OBJECTS if o != obj]),
            desc=f"{rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)} {rng.choice(SCENES)}",
            question=rng.choice(QUESTIONS_ABOUT_IMAGE).format(object=obj), style=rng.choice(STYLES),
            topic=rng.choice(TEXT_TOPICS) if self.synthetic else "",
        )

    def request(self, tool_name: str, slots: Slots) -> str:
        template = self.rng.choice(self.templates[tool_name])
        text = self.rng.choice(OPENERS) + template.format(**slots.__dict__)
        return text[0].upper() + text[1:] + ("?" if text.startswith(("Could", "Can")) else ".")

    def tool_list(self, required: list[str]) -> list[tuple[str, str]]:
        names = self.pooled_tool_list(required) if self.tool_sets else None
        if names is None:
            total = self.rng.randint(max(2, len(required)), 5)
            taken = {self.concept(n) for n in required}
            pool = self.seen_names if self.unseen_gold else self.tools
            others = [n for n in pool if self.concept(n) not in taken]
            names = required + self.rng.sample(others, total - len(required))
            self.rng.shuffle(names)
            if self.tool_sets and len(self.tool_set_pool) < self.tool_sets:
                self.tool_set_pool.append(names)
        return [(n, self.tools[n]["description"]) for n in names]

    def pooled_tool_list(self, required: list[str]) -> list[str] | None:
        """A pooled tool list holding every required tool; None while the pool may still grow and a
        coin flip says grow it, or when no pooled list fits."""
        if len(self.tool_set_pool) < self.tool_sets and self.rng.random() < 0.5:
            return None
        fitting = [names for names in self.tool_set_pool if set(required) <= set(names)]
        return list(self.rng.choice(fitting)) if fitting else None

    def observation(self, tool_name: str, slots: Slots) -> str:
        kind = self.tools[tool_name]["observation"]
        if self.observations is not None and kind != "image_path":
            return self.observations.write(self.tools[tool_name], slots)
        return f"Result saved as {self.image_path()}" if kind == "image_path" else kind

    def arguments(self, tool_name: str, image: str, slots: Slots) -> str:
        tool = self.tools[tool_name]
        if tool_name == "Replace Something From The Photo":
            return f"{image}, {slots.object}, {slots.object2}"
        text = getattr(slots, tool.get("text_slot") or TEXT_ARGUMENT.get(tool_name, "desc"))
        if not tool["needs_image"]:
            return text
        return image if tool["num_args"] == 1 else f"{image}, {text}"

    # ---- samples -------------------------------------------------------------------------------
    def tool_steps(self, tool_name: str, image: str, slots: Slots) -> list[tuple[str, str, str]]:
        """(tool, arguments, observation) for the gold tool and, first, its prerequisite if any."""
        steps = []
        prerequisite = self.tools[tool_name]["prerequisite"]
        if prerequisite:
            observation = self.observation(prerequisite, slots)
            steps.append((prerequisite, image, observation))
            image = observation.removeprefix("Result saved as ")
        steps.append((tool_name, self.arguments(tool_name, image, slots), self.observation(tool_name, slots)))
        return steps

    def gold_tool(self, kind: str) -> str:
        if self.unseen_gold and kind == "tool":
            return self.rng.choice([n for n in self.tools if n not in self.seen_names and not self.tools[n]["prerequisite"]])
        names = self.seen_names if not self.synthetic or kind == "two_step" or self.rng.random() < SEEN_GOLD_SHARE else list(self.tools)
        candidates = [n for n in names if bool(self.tools[n]["prerequisite"]) == (kind == "two_step")]
        return self.rng.choice(candidates)

    def conversation(self, tool_name: str, slots: Slots, image: str) -> tuple[str, Callable[[], str]]:
        """(chat history, a function that draws the new input). The request is drawn later, after the
        steps, as the original recipe drew it, so that recipe's files stay identical for a seed."""
        needs_image = self.tools[tool_name]["needs_image"]
        style = "gpt4tools"
        if self.natural_share and self.rng.random() < self.natural_share:
            style = self.rng.choice(("inline", "turns"))
        if style == "gpt4tools":
            history = image_turn(image, slots.caption) if needs_image or self.rng.random() < 0.3 else ""
            return history, lambda: self.request(tool_name, slots)
        if style == "inline":  # the path inside the request, maybe behind an introduction; no history
            intro = self.rng.choice(INLINE_INTROS).format(image=image) if needs_image else ""
            refer = image if not intro or self.rng.random() < 0.5 else self.rng.choice(IMAGE_WORDS + ("it",))
            return "", lambda: intro + self.request(tool_name, dataclasses.replace(slots, image=refer))
        turns = []  # "turns": an introduction turn and maybe a chat turn, then the request
        if needs_image or self.rng.random() < 0.3:
            human, ai = self.rng.choice(IMAGE_INTRO_TURNS)
            turns.append(f"Human: {human.format(image=image, caption=slots.caption)}\nAI: {ai.format(image=image)}")
        if self.rng.random() < 0.4:
            turns.insert(self.rng.randint(0, len(turns)), "Human: {}\nAI: {}".format(*self.rng.choice(CHAT_TURNS)))
        refer = self.rng.choice((image,) + IMAGE_WORDS + ("it",))
        return "\n".join(turns), lambda: self.request(tool_name, dataclasses.replace(slots, image=refer))

    def tool_sample(self, kind: str) -> dict:
        tool_name = self.gold_tool(kind)
        slots = self.slots()
        image = self.image_path()
        history, draw_request = self.conversation(tool_name, slots, image)
        steps = self.tool_steps(tool_name, image, slots)
        required = [name for name, _, _ in steps]
        prompt = build_prompt(self.tool_list(required), draw_request(), history)
        trace = "".join(tool_call_text(n, a) + o + "\n" for n, a, o in steps)
        final = steps[-1][2]
        return {"kind": kind, "gold_tool": tool_name, "instruction": prompt,
                "output": trace + answer_text(final), "_steps": steps, "_final": final}

    def context_sample(self) -> dict:
        base = self.tool_sample(self.rng.choice(["tool", "two_step"]))
        steps = base["_steps"]
        cut = self.rng.randint(1, len(steps))  # steps already taken; the target is turn number `cut`
        done = "".join(step_text(n, a, o) for n, a, o in steps[:cut])
        if cut < len(steps):
            name, args, _ = steps[cut]
            target = tool_call_text(name, args)
        else:
            target = answer_text(base["_final"])
        return {**base, "kind": "context", "instruction": base["instruction"] + done, "output": target}

    def negative_sample(self, question: str) -> dict:
        tools = self.tool_list([])
        history = image_turn(self.image_path(), self.slots().caption) if self.rng.random() < 0.3 else ""
        if self.natural_share and self.rng.random() < self.natural_share:
            history = self.rng.choice(("", "Human: {}\nAI: {}".format(*self.rng.choice(CHAT_TURNS))))
        return {"kind": "negative", "gold_tool": None, "instruction": build_prompt(tools, question, history), "question": question}

    def general_question(self) -> str:
        if self.rng.random() < 0.4:
            return self.rng.choice(STANDALONE_QUESTIONS)
        return self.rng.choice(GENERAL_QUESTION_TEMPLATES).format(topic=self.rng.choice(GENERAL_TOPICS))


def build_samples(
    n: int, seed: int, answer_questions: Callable[[list[str]], list[str]], tool_sets: int | None = None,
    tool_names_line: bool = False, synthetic: bool = False, natural_share: float = 0.0, realistic_observations: bool = False,
    unseen_gold: bool = False,
) -> list[dict]:
    """`tool_names_line`: the edge prompt starts with the line naming the tools, as `loragen-names`
    evaluates, so a generator can learn to use that line (same rows, same seed otherwise).
    `synthetic`, `natural_share`, `realistic_observations`, `unseen_gold`: see `SampleBuilder`; off, the
    file is the original recipe's."""
    builder = SampleBuilder(seed, answer_questions, tool_sets, synthetic, natural_share, realistic_observations, unseen_gold)
    kinds = builder.rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()), k=n)
    samples = []
    for kind in kinds:
        if kind == "negative":
            samples.append(builder.negative_sample(builder.general_question()))
        elif kind == "context":
            samples.append(builder.context_sample())
        else:
            samples.append(builder.tool_sample(kind))
    questions = sorted({s["question"] for s in samples if s["kind"] == "negative"})
    answers = dict(zip(questions, answer_questions(questions))) if questions else {}
    rows = []
    for index, sample in enumerate(samples):
        if sample["kind"] == "negative":
            sample["output"] = answer_text(answers[sample.pop("question")])
        parts = split_prompt(sample["instruction"])
        rows.append({
            "id": f"seed{seed}-{index}", "kind": sample["kind"], "gold_tool": sample["gold_tool"],
            "system_prompt": parts.system_prompt,
            "edge_prompt": parts.edge_prompt_with_tool_names if tool_names_line else parts.edge_prompt,
            "instruction": sample["instruction"], "output": sample["output"],
        })
    return rows

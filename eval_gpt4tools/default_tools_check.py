"""Does the agent call each of the UI's five default tools when a request asks for it in plain words?

    python -m eval_gpt4tools.default_tools_check [--mode loragen] [--out results/default_tools_loragen]

Ten requests, two phrasings per tool, about one synthetic photo, through `agent.Agent` with the UI's
default tools (constrained decoding on, as served) and one tool step. Issue 15's bar: 10 of 10.
`--set fresh` asks ten other requests (FRESH_REQUESTS), written on 2026-12-06 before the tools'
descriptions were last changed, so a description tuned to the first ten is caught; `--set both`
asks all twenty. Writes OUT.json (every request, the tool called, the answer) and OUT.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REQUESTS = {
    "Edge Detection On Image": ("Detect the edges of this image.", "Can you show me the outlines in this picture?"),
    "Segment the Image": ("Segment this image into regions.", "Split the picture into its parts."),
    "Detect Face": ("Is there a face in this picture?", "Find all the faces in the photo."),
    "Assess the Image Quality": ("Assess the quality of this image.", "How good is the quality of this photo?"),
    "Image Super-Resolution": ("Make this image sharper and larger.", "Upscale this picture to a higher resolution."),
}
# Held out from every description change: written before the edge tool's description was extended
# (2026-12-06), never used to choose a description; reported beside REQUESTS.
FRESH_REQUESTS = {
    "Edge Detection On Image": ("Give me a line drawing of the edges in this photo.", "Run a Canny filter on the image."),
    "Segment the Image": ("Divide this photo into separate regions.", "Label the different areas of this image."),
    "Detect Face": ("Does anyone's face show up in this photo?", "Tag the people's faces in this image."),
    "Assess the Image Quality": ("Rate this picture's quality.", "Is this photo blurry or of poor quality?"),
    "Image Super-Resolution": ("Increase the resolution of this photo.", "Enlarge this picture without losing detail."),
}
SETS = {"issue": (REQUESTS,), "fresh": (FRESH_REQUESTS,), "both": (REQUESTS, FRESH_REQUESTS)}


def check(mode: str, request_set: str = "issue") -> list[dict]:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from agent import Agent
    from tools.workspace import Workspace
    from ui import DEFAULT_TOOLS

    root = Path(tempfile.mkdtemp(prefix="default-tools-"))
    workspace = Workspace(root / "workspace")
    photo = np.full((240, 320, 3), 200, np.uint8)
    cv2.circle(photo, (160, 120), 60, (40, 80, 200), -1)
    cv2.imwrite(str(root / "photo.png"), photo)
    image = workspace.import_file(root / "photo.png")
    agent = Agent(list(DEFAULT_TOOLS), workspace=workspace, mode=mode, max_steps=1)
    rows = []
    asked = [(t, r, "fresh" if requests is FRESH_REQUESTS else "issue") for requests in SETS[request_set] for t, rs in requests.items() for r in rs]
    for tool, request, kind in tqdm(asked, desc=f"{mode}: default tools", unit="request"):
        started = time.perf_counter()
        result = agent.run(request, image=image)
        called = next((s.action for s in result.steps if s.kind == "tool"), None)
        rows.append({"set": kind, "wanted": tool, "request": request, "called": called, "right": called == tool, "answer": result.answer,
                     "error": result.error, "seconds": round(time.perf_counter() - started, 1)})
    return rows


def score(rows: list[dict]) -> dict[str, str]:
    """Right/asked for each request set in `rows`."""
    return {kind: f"{sum(r['right'] for r in rows if r['set'] == kind)}/{sum(r['set'] == kind for r in rows)}"
            for kind in dict.fromkeys(r["set"] for r in rows)}


def markdown(mode: str, rows: list[dict]) -> str:
    scores = ", ".join(f"{kind} set {right}" for kind, right in score(rows).items())
    lines = [f"# Default tools, mode {mode}: {scores} requests call the tool they ask for", "",
             "The issue set is issue 15's bar; the fresh set was written before the last description change and never used to choose one.", "",
             "| set | wanted | request | called | answer |", "|---|---|---|---|---|"]
    for r in rows:
        answer = (r["answer"] or f"(error: {r['error']})").replace("|", "/").replace("\n", " ")[:90]
        lines.append(f"| {r['set']} | {r['wanted']} | {r['request']} | {r['called'] or '–'}{'' if r['right'] else ' ✗'} | {answer} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from agent.modes import MODES
    from loragen_core.atomic import write_json_and_markdown
    from loragen_core.errors import user_errors

    parser = argparse.ArgumentParser(prog="python -m eval_gpt4tools.default_tools_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="loragen", help="Serving mode (default loragen, the shipped default).")
    parser.add_argument("--set", dest="request_set", choices=SETS, default="both",
                        help="Which requests: issue (issue 15's ten), fresh (ten held out from description changes), both (default).")
    parser.add_argument("--out", type=Path, default=None, help="Output path without suffix (default results/default_tools_<mode>).")
    args = parser.parse_args(argv)
    with user_errors():
        rows = check(args.mode, args.request_set)
        out = args.out or Path("results") / f"default_tools_{args.mode}"
        write_json_and_markdown(out, {"mode": args.mode, "right": score(rows), "rows": rows}, markdown(args.mode, rows))
        print(markdown(args.mode, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the agent call each of the UI's five default tools when a request asks for it in plain words?

    python -m eval_gpt4tools.default_tools_check [--mode loragen] [--out results/default_tools_loragen]

Ten requests, two phrasings per tool, about one synthetic photo, through `agent.Agent` with the UI's
default tools (constrained decoding on, as served) and one tool step. Issue 15's bar: 10 of 10.
Writes OUT.json (every request, the tool called, the answer) and OUT.md.
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


def check(mode: str) -> list[dict]:
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
    for tool, request in tqdm([(t, r) for t, rs in REQUESTS.items() for r in rs], desc=f"{mode}: default tools", unit="request"):
        started = time.perf_counter()
        result = agent.run(request, image=image)
        called = next((s.action for s in result.steps if s.kind == "tool"), None)
        rows.append({"wanted": tool, "request": request, "called": called, "right": called == tool, "answer": result.answer,
                     "error": result.error, "seconds": round(time.perf_counter() - started, 1)})
    return rows


def markdown(mode: str, rows: list[dict]) -> str:
    lines = [f"# Default tools, mode {mode}: {sum(r['right'] for r in rows)}/{len(rows)} requests call the tool they ask for", "",
             "| wanted | request | called | answer |", "|---|---|---|---|"]
    for r in rows:
        answer = (r["answer"] or f"(error: {r['error']})").replace("|", "/").replace("\n", " ")[:90]
        lines.append(f"| {r['wanted']} | {r['request']} | {r['called'] or '–'}{'' if r['right'] else ' ✗'} | {answer} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from agent.modes import MODES
    from loragen_core.atomic import write_json_and_markdown
    from loragen_core.errors import user_errors

    parser = argparse.ArgumentParser(prog="python -m eval_gpt4tools.default_tools_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="loragen", help="Serving mode (default loragen, the shipped default).")
    parser.add_argument("--out", type=Path, default=None, help="Output path without suffix (default results/default_tools_<mode>).")
    args = parser.parse_args(argv)
    with user_errors():
        rows = check(args.mode)
        out = args.out or Path("results") / f"default_tools_{args.mode}"
        write_json_and_markdown(out, {"mode": args.mode, "right": sum(r["right"] for r in rows), "rows": rows}, markdown(args.mode, rows))
        print(markdown(args.mode, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

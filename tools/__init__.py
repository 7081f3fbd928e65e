"""GPT4Tools tools: their definitions and the prompt format that presents them to a model."""

from .gpt4tools_prompt import PromptFormatError, PromptParts, build_prompt, image_turn, seen_tools, split_prompt, system_prompt_for

__all__ = ["PromptFormatError", "PromptParts", "build_prompt", "image_turn", "seen_tools", "split_prompt", "system_prompt_for"]

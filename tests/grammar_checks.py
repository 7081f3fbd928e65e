"""Shared by the grammar tests: does a grammar accept a text, token by token, on a model's tokenizer?"""

from __future__ import annotations

from loragen_core.edge_runtime import EdgeModel


def grammar_accepts(edge: EdgeModel, grammar: str, text: str) -> bool:
    matcher = edge.grammars.matcher(edge.grammars.compile(grammar))
    ids = edge.tokenizer.encode(text, add_special_tokens=False)
    return all(matcher.consume_token(i) for i in ids) and not matcher.is_error()

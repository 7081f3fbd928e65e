"""The GPT4Tools unseen-tool benchmark: scorer, runner, training-data builder."""

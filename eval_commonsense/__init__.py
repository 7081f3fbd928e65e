"""The commonsense benchmark of the paper's Table 2: eight tasks, five seen in training and three unseen,
scored by lm-evaluation-harness itself; resumable runs per mode, the table with its paired tests, the
latency ratio, and the generator's training data."""

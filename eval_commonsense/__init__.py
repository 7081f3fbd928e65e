"""The commonsense benchmark of the paper's Table 2: eight tasks, five seen in training and three unseen;
option log-likelihood scoring, a resumable runner, the table, and the generator's training data."""

"""What a run records and how it is judged: the verdict statistics and the judgement against the parent, k-fold
summaries, the card, the plots, suspect labels."""

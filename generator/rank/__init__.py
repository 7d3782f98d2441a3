"""Ranking stage: the serving scorer (scorer, signals, collab, rerank); its training and evaluation beside it."""

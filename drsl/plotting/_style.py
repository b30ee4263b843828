"""Shared plot style: one colour for positives (same identity) and one for negatives, everywhere."""

POS_COLOR = "#1a9850"  # green: a positive, a true match
NEG_COLOR = "#d73027"  # red: a negative, a wrong match

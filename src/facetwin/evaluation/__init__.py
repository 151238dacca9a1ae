"""Honest verification figures: pairs files, metrics, the LFW k-fold protocol, cross-training, plots."""

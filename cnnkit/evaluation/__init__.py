"""Evaluation: a trained run and a split in, figures with intervals out.

``evaluate`` (cached per run, split and variant), ``metrics`` (pure numpy), ``robustness``
(corrupted copies of a split), ``compare`` (runs on the same images, McNemar), ``diagnosis``
(training curves read by stated rules).
"""

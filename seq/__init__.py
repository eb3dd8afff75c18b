"""Sequential recommenders on gcf's core: ``python -m seq.train MODEL``."""

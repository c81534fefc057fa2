"""Stage 3, labels: each tile's 8-class label (source labels, annotations, pre-annotations) and its segments."""

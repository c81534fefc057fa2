"""Choose which tiles of a region enter the release: OpenEarthMap's loss-driven ("hard image") selection.

OpenEarthMap keeps 50-70 images of 1024x1024 per region.  Where a source offers more, the paper labels
every 10th image, trains a segmentation model on the labelled images and a regression model that predicts
each image's loss, then adds the images with the highest predicted loss.  The models are pooled over all
regions (at ~97 regions the labelled subsets together are several hundred tiles, which a model can learn
from; a single region's 7-12 cannot).

Modules (pure functions, no Luigi; importing this package imports nothing heavy):

* :mod:`.config`: settings (:class:`~.config.SelectionConfig`), the gate threshold :data:`~.config.MIN_POOLED`;
* :mod:`.io`: reading tiles at 256 px from the COG overview;
* :mod:`.model`: the small segmentation network, its training and K-fold cross-fitting;
* :mod:`.features`: one feature space (image statistics + uncertainty scalars of a model that did not see
  the tile);
* :mod:`.regressor`: the one scikit-learn regressor and its bootstrap-CI quality gate;
* :mod:`.sampling`: filling a region's quota (released, labelled subset, random half, hard half);
* :mod:`.core`: :func:`~.core.select` over a whole pool (the method, step by step);
* :mod:`.result`: the records it returns;
* :mod:`.record`: :func:`~.record.select_tiles`, what ``SelectTiles`` writes (and the manifest records):
  the selection, the annotation-loop stage of every region, the model, the gate and the evaluation.
"""

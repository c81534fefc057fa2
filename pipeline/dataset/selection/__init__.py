"""Choose which tiles of a region enter the release: OpenEarthMap's loss-driven ("hard image") sampling.

OpenEarthMap keeps 50-70 images of 1024x1024 per region.  Where a source offers many more images of a
region, the paper labels images sequentially (every 10th), trains a segmentation model on them, fits a
regression model that estimates each image's loss and adds the images with the highest predicted loss.
This package implements that procedure as pure functions (no Luigi): :mod:`.features` (reading tiles,
hand-crafted features), :mod:`.model` (the U-Net, its training and cross-fitting), :mod:`.regressor` (the
loss regressor) and :mod:`.sampling` (:func:`~.sampling.select_hard_images`, :func:`~.sampling.sample_region`).

Method of :func:`~.sampling.select_hard_images`
------------------------------------
1. **Labelled subset.**  The candidates at positions ``0, k, 2k, ...`` of the caller's (stable) order that
   have a label.  Labels with no labelled pixel (all 0) stay in the subset but give no loss.
2. **Reading.**  Every image is read once, downsampled to ``size`` x ``size`` with GDAL ``average``
   resampling (box averaging for 1024 -> 256); labels with ``mode`` resampling (labels never interpolate).
3. **Cross-fitted segmentation model.**  A small U-Net (:class:`SmallUNet`: 3 levels, 16-32-64 channels,
   no normalisation layers, 9 output classes, class 0 = ``ignore_index``) is trained ``folds`` times (default 3; fewer
   when the subset is small, so that every held-out part has >= 2 images): the trainable labelled images
   are dealt into folds by a seeded permutation and fold model *f* is trained on all other folds
   (i.e. a 2/3 : 1/3 train/held-out split for 3 folds).  Training: Adam (lr ``lr``, 3e-3), batch 1, ``epochs``
   passes over the fold's training images, random rot90/flip augmentation, cross-entropy with
   ``ignore_index=0``.  Every fold model starts from the same seeded initialisation.
4. **Honest loss targets.**  Each labelled image's loss (mean per-pixel cross-entropy over its labelled
   pixels) is measured with the fold model that did *not* see it, so every target is a held-out loss.
   The regressor is fitted on these held-out losses only (training losses would be biased low).
5. **Features** per image (``FEATURE_NAMES``): the hand-crafted :func:`image_features` (colour, HSV,
   edge/texture statistics on the ``size`` copy) plus model features from one fold model: the U-Net
   bottleneck embedding (64 channels, global average pooled), mean predictive entropy, mean max
   probability, predicted class fractions and the predicted-label boundary density.  A labelled image
   uses its held-out fold model; any other candidate uses fold model ``index % folds`` (round robin), so
   both see a model that was not trained on them.
6. **Loss regressor.**  ``RandomForestRegressor`` (fixed ``random_state``) on those features; its quality
   is reported as the Spearman rho between the held-out losses and ``cross_val_predict`` predictions
   (``KFold``, up to 5 folds, shuffled with a fixed seed).  The regressor fitted on all labelled images
   then predicts the loss of every candidate.
7. **Filling the quota.**  The labelled subset is always selected (reason ``"labelled"``) when it fits;
   of the remaining quota, ``round(random_fraction * remaining)`` candidates are drawn by seeded random
   sampling (``"random"``) and the rest are the unselected candidates with the highest predicted loss
   (``"hard"``, ties by position).  When the labelled subset alone exceeds the quota, the same split is
   applied within it (random share, then highest measured loss).

Fallbacks: ``len(candidates) <= quota`` -> everything, reason ``"all"``, no model; fewer than 4 trainable
labelled images -> labelled images plus seeded random filling, no model.  Both record why in
``"fallback"``.

Determinism: seeds are derived from ``seed`` with SHA-256 (never Python's ``hash()``); torch runs with
``torch.manual_seed`` inside a forked RNG state, ``torch.use_deterministic_algorithms(True)`` and a
fixed thread count (default 1: the reference machine's 2 cores are shared; more threads oversubscribe), all
restored afterwards.  The same inputs, seed and machine give an
identical result dict (float reductions may differ between CPU instruction sets or torch builds).
"""

"""Train / val / test splits, made per region so that every region appears in every split.

Modules: :mod:`.trials` (counts, the seeded 6:1:3 trials, stable releases), :mod:`.leakage` (footprints
and leakage groups), :mod:`.uda` (unsupervised domain-adaptation splits).

Policies
--------
* **Per region.** OpenEarthMap splits each region separately (about 6:1:3 train:val:test), so a model is
  tested on every region it was trained on.  :func:`split_dataset` groups images by ``image["region"]``
  and calls :func:`split_region` for each region, in sorted region order.
* **Counts** (:func:`split_counts`): largest-remainder rounding of ``n * ratio / sum(ratios)``, leftover
  images going to the largest fractional parts (ties in train, val, test order); then, for ``n >= 3``,
  train and test each get at least one image (taken from the largest other part).  ``n == 1`` -> all
  train; ``n == 2`` -> one train, one test.  A part whose ratio is 0 never receives images.
* **Class balance** (:func:`split_region`): ``trials`` random permutations of the region's images (sorted
  by id first, so input order does not matter) are drawn from a NumPy ``Generator`` seeded with the first
  8 bytes of ``sha256(f"{seed}:{region}")`` (never Python's ``hash()``).  In each permutation the first
  ``n_train`` images are train, the next ``n_val`` val, the rest test.  Each trial is scored

      score = 1000 * (#region classes with no pixel in train)
            +  100 * (#region classes with no pixel in test)
            +  L1 distance, in percent (0..200), between the train and test class-share vectors

  where a "region class" is one of 1..8 with at least one pixel in the region, and a class-share vector
  is the split's per-class pixel count divided by its total labelled pixels (all zeros for a split with
  no labelled pixel).  The lowest score wins; ties go to the earliest trial.  Everything is
  deterministic for a given (seed, region, image set, ratios, trials).
* **Leakage groups** (:func:`leakage_groups`): two tiles whose footprints overlap (also across sources and
  UTM zones) belong to one group (union-find over all overlapping pairs), and a group is never split.  A
  footprint is the tile's UTM ``bounds`` rectangle (8 points per edge) transformed to EPSG:4326, or the
  ``bounds_lonlat`` box when ``crs``/``bounds`` are absent; two footprints overlap when their intersection
  area exceeds :data:`OVERLAP_TOLERANCE` (1e-6) of the smaller footprint, measured on the ``bounds``
  rectangles themselves when both tiles are in one CRS (exact: edge-sharing tiles share 0), else on the
  EPSG:4326 footprints.  (Plain ``bounds_lonlat`` boxes of neighbouring UTM tiles overlap by thin slivers
  because of meridian convergence, which would chain a whole scene into one group; the transformed
  rectangles of edge-sharing tiles do not.)  The group id is
  the member id that sorts first in natural order (``austin_2`` before ``austin_10``).
* **Group assignment**: the trials permute *units* (a leakage group of undecided images, singletons
  included) instead of images; units are ordered by their first member id before permuting, so with
  singleton groups the trials are exactly the per-image permutations described above.  Walking a
  permutation, a unit whose members occupy the cumulative positions ``[s, s + k)`` goes to the split
  whose quota interval (``[0, q_train)``, ``[q_train, q_train + q_val)``, rest) contains its centre
  ``s + k / 2`` (a centre on a boundary goes to the later split).  The best trial is the one with the
  smallest *count deviation* ``sum(|count - split_counts(n)|)`` over the three splits, then the lowest
  score above, then the earliest.
* **Best assignment**: among the candidates (the trials, plus the coverage-first assignment below) the one
  whose counts are all within the split tolerance ``max(1, 0.1 n)`` of ``split_counts(n)``
  (:func:`~.coverage.split_tolerance`, the tolerance ``validate`` checks) first, then the fewest region classes
  missing from train, then the smallest count deviation, the lowest score, the earliest.
* **Class coverage** (:mod:`.coverage`): a class that the region's undecided images have but its images already
  decided for train do not (a class new to the region, or one only images frozen in val/test by an earlier
  release have) goes to train *when the quotas allow*: the fewest undecided units bringing every such class
  (greedy set cover, :func:`~.coverage.cover_units`) need ``k`` train places; when the train quota is smaller,
  it is raised one image at a time, taken from val or test (the one with the larger surplus over its target,
  ties val), as long as every split count stays within the split tolerance; and when no trial brings every such
  class to train, one more candidate, the *coverage-first* assignment (those units walked first, then the
  others in order; ``best_trial == trials`` when it wins), is added.  This applies to a first release too: a
  small region whose classes need more train images than ``split_counts`` gives them trades exact counts
  (within the tolerance) for class coverage.  When the tolerance forbids it,
  the class stays out of train and ``validate`` reports it: as an error, or as the warning
  ``train-quota-full`` when no image that carries it could have moved to train within the tolerance.
* **One leakage group**: a region none of whose images is decided and all of whose images overlap (one
  leakage group) cannot be split; it goes wholly to train (a lone image is only useful for training) with the
  warning ``single-leakage-group`` in its info, and ``validate`` reports its split counts as that warning, not
  as an error.  Groups never straddle splits.
* **Stable releases** (``previous``): an image whose stable key (:func:`image_key`) is in ``previous``
  keeps that split; an undecided image whose leakage group holds decided images follows them (the most
  common split among them, ties in train, val, test order).  Only the remaining images are assigned by
  the trials, with quotas ``q`` chosen greedily (one image at a time to the split, among those with a
  positive ratio, with the largest remaining ``target - decided - q``; ties train, val, test) so that the
  region's counts move as close as possible to ``split_counts(n)``: ratios converge to 6:1:3 as releases
  grow, and already released images never move.
* **UDA splits** (:func:`uda_split`, :func:`continent_splits`): see those functions.
"""

"""One writer per upstream layout (:mod:`.xbd`, :mod:`.inria`, :mod:`.spacenet`, :mod:`.local`): each writes a
rendered scene file in exactly the on-disk layout the real adapter of that kind reads, and returns the
image's path relative to the demo root.  :mod:`.common` holds the deterministic file writers they share."""

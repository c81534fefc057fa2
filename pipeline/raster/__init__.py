"""Stage 2, raster: inspect a scene and plan its local-UTM grid, warp it into tiles, write COGs."""

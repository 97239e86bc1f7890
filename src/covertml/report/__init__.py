"""Reports: image grids and (later) HTML pages of results."""

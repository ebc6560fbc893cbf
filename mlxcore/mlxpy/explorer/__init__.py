"""The results explorer: ``mlxpy report`` (one self-contained HTML file) and ``mlxpy ui`` (the
same page served live from the index); the page's data, its assets, the local server."""

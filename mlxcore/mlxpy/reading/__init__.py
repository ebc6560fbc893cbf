"""Reading runs back: the Reader, its index, the query language, the ``runs.mlxpy`` accessor
and plots. Imports pandas: loaded only when a Reader is used."""

"""Built-in benchmarks, one module per dataset family; installed as ``textseg.benchmarks`` and
registered through the ``textseg.benchmarks`` entry-point group in pyproject.toml."""

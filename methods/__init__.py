"""Built-in methods, one folder each; installed as ``textseg.methods`` and registered through the
``textseg.methods`` entry-point group in pyproject.toml."""

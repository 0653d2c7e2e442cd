"""Test support that ships with textseg, so plugin authors can use it too.

* :func:`textseg.testing.tiny_clip.build_tiny_clip` / ``ensure_tiny_clip``: a tiny random CLIP
  saved to a folder, built offline;
* :func:`textseg.testing.contract.check_method`: the contract every method must pass.
"""

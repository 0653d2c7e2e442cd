"""Image-text training data: the ``--data`` syntax, the sources it names, and the stream the trainer reads."""

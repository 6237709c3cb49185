"""What a search's files say, for people: the ranked table and its formats, the figures, the
self-contained page and `status`. Reads the search folder only; never loads TensorFlow."""

"""Prediction for new posts: the Predictor API, ``pgmre predict`` and the HTTP service (``pgmre serve``)."""

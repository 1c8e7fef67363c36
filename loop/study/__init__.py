"""The loop study: how far loopbreak breaks the feedback loop of a recommender that retrains on
its own logs, measured against the simulated world's ground truth over many seeds.

``config`` (the study's size and arms, light enough for the command line's help), ``arms`` (how
each arm serves and retrains), ``metrics`` (the measures, pure numpy), ``run`` (one seed and arm
through the decision service, the log and the training table; all of them over worker
processes), ``summary`` (means, intervals and paired differences over seeds) and ``report`` (the
JSON document and the HTML page with a plot per metric).
"""

"""The loop that joins the libraries, with no HTTP and no command line: the decision service,
log windows and training impressions, policy replay and OPE targets, retraining, the demo,
tuning and the simulated-world runs. ``api/`` and ``cli/`` are thin shells around it."""

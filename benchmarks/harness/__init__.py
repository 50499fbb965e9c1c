"""The benchmark harness of tickpipe: ceilings, tickpipe figures and the peer, in one run.

Run it with `python -m benchmarks.run` (see benchmarks/README.md). Not part of the test suite.
"""

"""A FAKE OF pycuda FOR TESTS ON MACHINES WITHOUT A GPU: NOT pycuda. See ``driver``."""

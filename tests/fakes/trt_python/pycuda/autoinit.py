"""A FAKE OF pycuda.autoinit FOR TESTS ON MACHINES WITHOUT A GPU: there is no CUDA context to create."""

device = None
context = None

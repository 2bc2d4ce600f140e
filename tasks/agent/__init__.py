"""The device agent (``agent.py``): one self-contained, stdlib-only file uploaded to an edge device
and run there for probe, build, benchmark and infer; it answers in JSON. The host-side runtimes
import it as a module so that builds and sessions have a single implementation."""

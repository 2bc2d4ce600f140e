"""What a device can do, from its fingerprint (``artifacts/probe/<target>.json``): ISA capabilities
(:mod:`tasks.device.isa`), nominal compute peaks (:mod:`tasks.device.peaks`), whether a precision
applies to it (:mod:`tasks.device.support`). Host side: no stage."""

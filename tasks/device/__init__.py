"""What a device can do, from its fingerprint (``artifacts/probe/<target>.json``): ISA capabilities
(:mod:`tasks.device.isa`), nominal compute peaks (:mod:`tasks.device.peaks`), whether a precision
applies to it (:mod:`tasks.device.support`), which targets share one build (its device class,
:mod:`tasks.device.device_class`; the shared builds, :mod:`tasks.device.class_store`). Host side: no stage."""

"""What a device can do, read from its fingerprint (host side: no stage, no device connection)."""

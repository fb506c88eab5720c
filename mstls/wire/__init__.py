"""The wire layer: pure codecs with no state (buffers, frames, parameters, records)."""

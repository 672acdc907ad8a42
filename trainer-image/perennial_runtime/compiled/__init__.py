"""Compiled (ONNX) form of a trained model: export, layout, runtime and parity."""

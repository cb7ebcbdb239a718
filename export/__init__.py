"""Torch checkpoint -> ONNX model bundle, with a parity check and optional int8 quantization.

Only :func:`export_bundle` needs torch (imported when called), so importing this package
stays cheap.
"""

from artylyze.export.errors import ExportError
from artylyze.export.onnx_export import export_bundle

__all__ = ["ExportError", "export_bundle"]

"""GPUs: memory, bandwidth and tensor throughput, as their datasheets quote them."""

from __future__ import annotations

from dataclasses import dataclass

from specwise.catalog.architecture import Precision


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    memory_gb: float
    bandwidth_tbs: float
    bf16_tflops: float
    eight_bit_tflops: float
    source: str

    def tflops(self, precision: Precision) -> float:
        """Dense tensor throughput for matmuls with weights stored at `precision`.

        8-bit weights run on 8-bit tensor cores (W8A8 / FP8); 4-bit weight-only
        schemes dequantize to 16 bits, so they compute at the BF16 rate.
        """
        if precision in (Precision.fp8, Precision.int8):
            return self.eight_bit_tflops
        if precision is Precision.fp32:
            return self.bf16_tflops / 2
        return self.bf16_tflops

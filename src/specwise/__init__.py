"""specwise: does speculative decoding pay off on your vLLM deployment?"""

__version__ = "0.1.0"

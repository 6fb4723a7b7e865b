"""The embedded engine: real vLLM servers started and stopped by specwise."""
